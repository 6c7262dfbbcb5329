package upgrade

import (
	"sync/atomic"
	"time"
)

// coarseClock tells the time to within coarseTick without reading the
// clock on every call: a remembered request checks its entry's expiry, and
// reading the clock (about 60 ns on a VM's kvm-clock) would be a third of
// what the wrapper may cost. While it is in use, a timer refreshes the time
// every tick; a tick in which nobody asked stops the timer, and the next
// call starts it again with a fresh reading. No goroutine lives between
// ticks, and an unused Transport leaves nothing running.
type coarseClock struct {
	now     atomic.Int64 // unix nanoseconds as of the last refresh
	running atomic.Bool  // a refresh is scheduled
	asked   atomic.Bool  // someone read the time since the last refresh
}

// coarseTick bounds how stale the time may be: expiry is hours away.
const coarseTick = time.Second

func (c *coarseClock) read() time.Time {
	if !c.running.Load() {
		c.now.Store(time.Now().UnixNano()) // before any reader can see running
		if c.running.CompareAndSwap(false, true) {
			time.AfterFunc(coarseTick, c.refresh)
		}
	}
	if !c.asked.Load() {
		c.asked.Store(true) // written only when it changes, as it is read by every request
	}
	return time.Unix(0, c.now.Load())
}

func (c *coarseClock) refresh() {
	c.now.Store(time.Now().UnixNano())
	if !c.asked.Swap(false) {
		c.running.Store(false)
		return
	}
	time.AfterFunc(coarseTick, c.refresh)
}

// clock returns the time; tests set Transport.now.
func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// recent returns the time to within coarseTick, for checks on every
// request; tests set Transport.now.
func (t *Transport) recent() time.Time {
	if t.now != nil {
		return t.now()
	}
	return t.coarse.read()
}
