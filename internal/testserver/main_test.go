package testserver

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the suite if any test leaves a goroutine behind: Close must
// take every connection and handler with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
