package agent

// The warm-up. A fresh sandbox's host sends, right after the first answer,
// an Init and then (a millisecond or two of its own bookkeeping later) the
// caller's first exec, which needs the spare threads (threads.go) before
// its process starts. The agent is idle while the host does its
// bookkeeping, so it makes them then, once its first answer is out
// (deferred.after), never before, so the path to ready is untouched. (The
// wire messages need no warm-up: they are plain structs (agentpb), where
// the protobuf runtime built each message type's coders by reflection on
// its first use.)

// warmSteps returns the warm-up's steps.
func warmSteps() []func() {
	return []func(){makeSpareThreads}
}
