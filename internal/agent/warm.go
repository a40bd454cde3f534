package agent

import (
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
)

// The warm-up. A fresh sandbox's host sends, right after the first answer,
// an Init and then (a millisecond or two of its own bookkeeping later) the
// caller's first exec. Each first use of a code path costs the agent far
// more than later ones: the protobuf runtime builds each message type's
// coders on first use, and every fresh heap or stack page is a page fault
// (tens of µs each on the benchmark VM). The agent is idle while the host
// does its bookkeeping, so it does that work then, once its first answer
// is out (deferred.after), never before, so the path to ready is
// untouched.

// warmSteps returns the warm-up's steps, in the order a fresh sandbox's
// requests need them: the Init's message types, then the exec's.
func warmSteps() []func() {
	return []func(){warmInit, warmExec, makeSpareThreads}
}

func warmInit() {
	img := &agentv1.ImageConfig{Env: []string{"K=V"}, WorkingDir: "/", User: "0", Entrypoint: []string{"sh"}, Cmd: []string{"-c"}}
	st := &agentv1.StartSpec{
		Command: []string{"sh"}, Env: map[string]string{"K": "V"}, WorkingDir: "/", User: "0",
		Files:            []*agentv1.File{{Path: "/f", Content: []byte{1}, Mode: 0o644}},
		DeadlineUnixNano: 1,
	}
	warmCodec(&agentv1.InitRequest{Image: img, Start: st}, new(agentv1.InitRequest))
	warmCodec(&agentv1.InitResponse{MainPid: 1}, new(agentv1.InitResponse))
}

func warmExec() {
	spec := &agentv1.ProcessSpec{
		Command: []string{"sh"}, Env: map[string]string{"K": "V"}, WorkingDir: "/", User: "0",
		Stdin: true, Tty: true, Rows: 1, Cols: 1, TimeoutMs: 1, Tag: "t",
	}
	warmCodec(&agentv1.StartRequest{Spec: spec}, new(agentv1.StartRequest))
	exit := &agentv1.ExitStatus{Code: 1, Signal: "SIGKILL", OomKilled: true, TimedOut: true, AtUnixNano: 1}
	for _, ev := range []*agentv1.ProcessEvent{
		{Event: &agentv1.ProcessEvent_Started_{Started: &agentv1.ProcessEvent_Started{ExecId: "e", Pid: 1}}},
		{Event: &agentv1.ProcessEvent_Output_{Output: &agentv1.ProcessEvent_Output{Stream: agentv1.Stream(1), Data: []byte{1}}}},
		{Event: &agentv1.ProcessEvent_Exit{Exit: exit}},
	} {
		warmCodec(ev, new(agentv1.ProcessEvent))
	}
}

// warmCodec encodes m and decodes it into into, as the agent's calls do:
// the first use of a message type builds its coders (and those of the
// types it holds, which is why every field of m is set).
func warmCodec(m, into proto.Message) {
	if b, err := proto.Marshal(m); err == nil {
		_ = proto.Unmarshal(b, into)
	}
}
