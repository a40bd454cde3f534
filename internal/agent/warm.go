package agent

// The warm-up. A fresh sandbox's host sends, right after the first answer,
// an Init and then (a few milliseconds of its own bookkeeping and the
// caller's later) the caller's first exec, which needs the spare threads
// (threads.go) before its process starts. The agent is idle in between, so
// it makes them then, once the Init's answer is out (deferred.after),
// never before, so the path to ready and the Init are untouched. (The
// wire messages need no warm-up: they are plain structs (agentpb), where
// the protobuf runtime built each message type's coders by reflection on
// its first use.)

// warmSteps returns the warm-up's steps.
func (s *Server) warmSteps() []func() {
	if s.hasWorkload() {
		return nil // no spare threads needed (workload.go)
	}
	return []func(){makeSpareThreads}
}
