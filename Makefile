# sbx build entry points. `make generate` rewrites gen/ from api/; CI checks
# that the result is clean.

PROTOC   ?= protoc
GO       ?= go
API_DIR  := api
GEN_DIR  := gen
PROTOS   := $(shell find $(API_DIR) -name '*.proto' | sort)

.PHONY: generate build

AGENT_PROTOS := $(shell find $(API_DIR)/sbx/agent -name '*.proto' | sort)
LITE_PLUGIN   = $(abspath $(GEN_DIR).tmp)/.protoc-gen-sbx-lite

# generate runs protoc once over every .proto under api/ with protoc-gen-go
# and protoc-gen-connect-go; api/sbx/agent/v1/x.proto lands in
# gen/sbx/agent/v1/ (paths=source_relative). The agent's .proto files also
# go through this module's protoc-gen-sbx-lite, into gen/sbx/agent/v1/agentpb:
# the types the agent and its client use, without the protobuf runtime
# (internal/protolite). Stale files go with the old gen/.
generate:
	rm -rf $(GEN_DIR).tmp
	mkdir -p $(GEN_DIR).tmp
	$(GO) build -o $(LITE_PLUGIN) ./cmd/protoc-gen-sbx-lite || { rm -rf $(GEN_DIR).tmp; exit 1; }
	$(PROTOC) -I $(API_DIR) \
		--go_out=$(GEN_DIR).tmp --go_opt=paths=source_relative \
		--connect-go_out=$(GEN_DIR).tmp --connect-go_opt=paths=source_relative \
		$(PROTOS:$(API_DIR)/%=%) || { rm -rf $(GEN_DIR).tmp; exit 1; }
	$(PROTOC) -I $(API_DIR) --plugin=protoc-gen-sbx-lite=$(LITE_PLUGIN) \
		--sbx-lite_out=$(GEN_DIR).tmp --sbx-lite_opt=paths=source_relative,subpackage=agentpb \
		$(AGENT_PROTOS:$(API_DIR)/%=%) || { rm -rf $(GEN_DIR).tmp; exit 1; }
	rm -f $(LITE_PLUGIN)
	# Swap only after protoc succeeded, so a broken .proto never empties gen/.
	rm -rf $(GEN_DIR)
	mv $(GEN_DIR).tmp $(GEN_DIR)

# build builds the static agent (it runs as PID 1 in every sandbox, on any
# root filesystem, so it must not need libc).
build:
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/sbx-agent ./cmd/sbx-agent
