package lifecycle

import "sync"

// notifier wakes waiters when a sandbox's record changes in this process.
// Each id has a channel that is closed (and dropped) on the next change, so
// a waiter takes the channel, re-reads the record, then blocks on it.
type notifier struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: map[string]chan struct{}{}} }

// watch returns a channel closed at the next change of id.
func (n *notifier) watch(id string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.ch[id]
	if !ok {
		c = make(chan struct{})
		n.ch[id] = c
	}
	return c
}

// changed wakes every waiter of id.
func (n *notifier) changed(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.ch[id]; ok {
		close(c)
		delete(n.ch, id)
	}
}
