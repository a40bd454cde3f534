// Command protoc-gen-sbx-lite is a protoc plugin that generates the agent
// API's messages as plain Go structs that encode themselves without the
// protobuf runtime (internal/protolite/gen). `make generate` runs it on
// api/sbx/agent/v1 with --sbx-lite_opt=subpackage=agentpb.
package main

import (
	"flag"

	"google.golang.org/protobuf/compiler/protogen"

	"github.com/sbx-run/sbx/internal/protolite/gen"
)

func main() {
	var flags flag.FlagSet
	var opts gen.Options
	flags.StringVar(&opts.Subpackage, "subpackage", "", "name of the Go package, beside the protoc-gen-go one, that the types go to")
	protogen.Options{ParamFunc: flags.Set}.Run(func(p *protogen.Plugin) error { return gen.Generate(p, opts) })
}
