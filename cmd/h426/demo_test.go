package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDemo(t *testing.T) {
	start := time.Now()
	code, stdout, stderr := runCLI("demo")
	if code != exitOK {
		t.Errorf("h426 demo: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	// The unreachable HTTP/3 row costs its fallback delay, the others
	// little; the bound leaves room for a loaded machine.
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("h426 demo took %v, want under 30s", elapsed)
	}
	lines := strings.Split(stdout, "\n")
	for _, line := range lines {
		if n := utf8.RuneCountInString(line); n > tableWidth {
			t.Errorf("line is %d columns wide, want at most %d: %q", n, tableWidth, line)
		}
	}
	for _, sc := range scenarios() {
		found := false
		for i, line := range lines {
			if strings.Contains(line, "  "+sc.name+"  ") {
				found = true
				if !strings.HasPrefix(line, "ok ") {
					t.Errorf("row %q does not start with ok", line)
				}
				if i+1 == len(lines) || !strings.HasPrefix(lines[i+1], stepsIndent) {
					t.Errorf("row %q has no steps below it", line)
				}
			}
		}
		if !found {
			t.Errorf("no row for %q:\n%s", sc.name, stdout)
		}
	}
	for _, want := range []string{"ANSWER is", "SEEN is", "426 over HTTP/1.1, offering HTTP/2 → HTTP/2 answered 200"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestDemoReportsFailure(t *testing.T) {
	wrong := scenarios()[0]
	wrong.want.proto = "HTTP/1.1" // the row really ends on HTTP/2.0
	var stdout, stderr bytes.Buffer
	if code := demo(context.Background(), &stdout, &stderr, []scenario{wrong}); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stdout.String(), "FAIL") {
		t.Errorf("table does not say FAIL:\n%s", &stdout)
	}
	if !strings.Contains(stderr.String(), "want status 200 over HTTP/1.1") {
		t.Errorf("stderr does not explain the failure:\n%s", &stderr)
	}
}

func TestDemoArguments(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
	}{
		{[]string{"demo", "extra"}, exitUsage, ""},
		{[]string{"demo", "-h"}, exitOK, "usage: h426 demo\n"},
		{[]string{"demo", "--help"}, exitOK, "usage: h426 demo\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, _ := runCLI(tt.args...)
			if code != tt.wantCode || !strings.HasPrefix(stdout, tt.wantStdout) {
				t.Errorf("exit %d, stdout %q; want %d and %q", code, stdout, tt.wantCode, tt.wantStdout)
			}
		})
	}
}
