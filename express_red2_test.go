package upgrade

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/h426/upgrade/internal/testserver"
)

// Requests over the express path while the memory changes beside them
// (another origin put and forgotten, the origin itself put again) and while Close runs: no race, and every answer is a
// response over HTTP/2 or ErrClosed.
func TestRedExpressUnderChurnAndClose(t *testing.T) {
	for _, path := range []string{"recall", "express"} {
		t.Run(path, func(t *testing.T) {
			untraced(t)
			if path == "recall" {
				traced.Store(true)
			}
			s := startServer(t, testserver.Config{TLS: true, Require: testserver.RequireHTTP2, Upgrade: []string{"HTTP/2"}})
			tr := newTransport(t, legacyBase(t, s.CertPool()))
			for range 2 { // learn, then settle
				resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, resp)
			}
			wantExpress(t, tr, s.URL, path == "express")
			errs := capErrors(t)
			stop := make(chan struct{})
			var churn sync.WaitGroup
			churn.Add(1)
			go func() {
				defer churn.Done()
				m := tr.memory()
				other := origin{secure: true, host: "other.test"}
				mine := originOf(newRequest(t, testContext(t), "GET", s.URL, nil))
				entry := m.slotOf(mine).memoryEntry
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					m.put(other, memoryEntry{via: candidate{target: target{kind: targetHTTP2}}, expires: time.Now().Add(time.Hour)})
					if i%2 == 0 {
						m.forget(other)
					}
					m.put(mine, entry) // learned again: a new slot, settled anew
					time.Sleep(time.Millisecond)
				}
			}()
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 40 {
						if g == 0 && i == 30 {
							tr.Close()
						}
						resp, err := tr.RoundTrip(newRequest(t, testContext(t), "GET", s.URL, nil))
						switch {
						case errors.Is(err, ErrClosed):
						case err != nil:
							errs.Error(err)
						case resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2:
							drain(resp)
							errs.Errorf("%d %s", resp.StatusCode, resp.Proto)
						default:
							if err := drain(resp); err != nil {
								errs.Error(err)
							}
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			churn.Wait()
		})
	}
}
