package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

var (
	originA = origin{secure: true, host: "a"}
	originB = origin{secure: true, host: "b"}
)

func TestBrokenMarksDoubleAndClear(t *testing.T) {
	var b brokenMarks
	clock := time.Now()
	key := brokenKeyOf(originA, target{kind: targetHTTP3})

	want := brokenPeriod
	for range 12 {
		b.fail(key, clock)
		clock = clock.Add(want - time.Second)
		if !b.isBroken(key, clock) {
			t.Fatalf("not marked %v into a %v mark", want-time.Second, want)
		}
		clock = clock.Add(2 * time.Second)
		if b.isBroken(key, clock) {
			t.Fatalf("still marked after %v", want)
		}
		want = min(2*want, maxBrokenPeriod)
	}
	b.clear(key)
	b.fail(key, clock)
	clock = clock.Add(brokenPeriod + time.Second)
	if b.isBroken(key, clock) {
		t.Error("a success did not reset the period to its first length")
	}
	t.Run("bounded", func(t *testing.T) {
		for i := range maxBrokenMarks + 100 {
			b.fail(brokenKeyOf(origin{secure: true, host: fmt.Sprint("host", i)}, target{kind: targetHTTP3}), clock)
		}
		if n := b.marks.Len(); n > maxBrokenMarks {
			t.Errorf("%d marks kept, bound is %d", n, maxBrokenMarks)
		}
	})
}

// Requests in flight together that meet one outage mark the protocol broken
// for the first period, not for the doubled-many-times one.
func TestBrokenMarkCountsOneOutageOnce(t *testing.T) {
	var b brokenMarks
	clock := time.Now()
	key := brokenKeyOf(originA, target{kind: targetHTTP3})
	for range 20 {
		b.fail(key, clock)
	}
	mark, ok := b.marks.Peek(key)
	if !ok || mark.failures != 1 || !mark.until.Equal(clock.Add(brokenPeriod)) {
		t.Errorf("mark %+v after 20 failures at once, want 1 failure for %v", mark, brokenPeriod)
	}
}

// What marks a protocol broken: a failure before any connection that the
// caller did not cause; a response clears the mark.
func TestNoteOutcome(t *testing.T) {
	h3 := target{kind: targetHTTP3}
	key := brokenKeyOf(originB, h3)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		ctx        context.Context
		err        error
		wantBroken bool
	}{
		{"connection failure", context.Background(), &connectError{errors.New("timeout")}, true},
		{"caller's cancellation", cancelled, &connectError{context.Canceled}, false},
		{"failure after the request left", context.Background(), errors.New("stream reset"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Transport{}
			req, _ := http.NewRequestWithContext(tt.ctx, "GET", "https://b/", nil)
			r := &transportRequest{req: req, origin: originB}
			tr.noteOutcome(r, h3, tt.err)
			if got := tr.broken.isBroken(key, tr.clock()); got != tt.wantBroken {
				t.Errorf("broken %v, want %v", got, tt.wantBroken)
			}
			tr.noteOutcome(r, h3, nil)
			if tr.broken.isBroken(key, tr.clock()) {
				t.Error("a response did not clear the mark")
			}
		})
	}
}
