// Package sandbox is the domain of sbx: the nouns (Sandbox, Spec, State), the
// lifecycle reasons, the one error vocabulary, and the interfaces that the
// runtimes (Runtime, Agent) implement. It imports no other sbx package, and no
// generated wire type ever reaches it.
package sandbox
