package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte("{\"a\": 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "https://example.test/x"
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o options)
	}{{
		name: "-H repeats in order",
		args: []string{"-H", "A: 1", "-H", "B:2", "-H", "A: 3", url},
		check: func(t *testing.T, o options) {
			want := headerFlag{{"A", "1"}, {"B", "2"}, {"A", "3"}}
			if !slices.Equal(o.headers, want) {
				t.Errorf("headers = %v, want %v", o.headers, want)
			}
		},
	}, {
		name: "-d @file reads the file as is",
		args: []string{"-d", "@" + body, url},
		check: func(t *testing.T, o options) {
			if !o.data.set || string(o.data.body) != "{\"a\": 1}\n" {
				t.Errorf("data = %+v, want the file", o.data)
			}
		},
	}, {
		name: "-d repeated joins with &",
		args: []string{"-d", "a=1", "-d", "b=2", url},
		check: func(t *testing.T, o options) {
			if string(o.data.body) != "a=1&b=2" {
				t.Errorf("data = %q, want a=1&b=2", o.data.body)
			}
		},
	}, {
		name: "--legacy and --min-tls",
		args: []string{"--legacy", "--min-tls", "1.3", url},
		check: func(t *testing.T, o options) {
			if o.first != legacy || o.minTLS != tls.VersionTLS13 {
				t.Errorf("first = %+v, minTLS = %v; want %+v, TLS 1.3", o.first, o.minTLS.String(), legacy)
			}
		},
	}, {
		name: "defaults",
		args: []string{url},
		check: func(t *testing.T, o options) {
			if o.url != url || o.timeout != 30*time.Second || o.first != (firstRequest{}) || o.minTLS != 0 || o.data.set {
				t.Errorf("options = %+v", o)
			}
		},
	}, {
		name: "options after the URL, as curl takes them",
		args: []string{url, "-v", "-X", "PUT"},
		check: func(t *testing.T, o options) {
			if o.url != url || !o.verbose || o.method != "PUT" {
				t.Errorf("url %q, verbose %v, method %q; want the URL, true, PUT", o.url, o.verbose, o.method)
			}
		},
	}, {
		name: "one-letter options combined",
		args: []string{"-sSfLkiv", url},
		check: func(t *testing.T, o options) {
			if !o.silent || !o.showErr || !o.fail || !o.follow || !o.insecure || !o.include || !o.verbose {
				t.Errorf("options = %+v, want -s -S -f -L -k -i -v all set", o)
			}
		},
	}, {
		name: "a combination ending in an option that takes a value",
		args: []string{"-vo", "out.txt", url, "-XPUT", "-m2"},
		check: func(t *testing.T, o options) {
			if !o.verbose || o.output != "out.txt" || o.method != "PUT" || o.timeout != 2*time.Second {
				t.Errorf("verbose %v, output %q, method %q, timeout %v; want true, out.txt, PUT, 2s", o.verbose, o.output, o.method, o.timeout)
			}
		},
	}, {
		name: "-- ends the options",
		args: []string{"-k", "--", url},
		check: func(t *testing.T, o options) {
			if !o.insecure || o.url != url {
				t.Errorf("insecure %v, url %q", o.insecure, o.url)
			}
		},
	}, {
		name: "long forms, with a space or =",
		args: []string{"--request", "PUT", "--header", "A: 1", "--data=x", "--include", "--output", "f", "--location",
			"--silent", "--show-error", "--fail", "--write-out", "%{http_code}", "--verbose", "--insecure", "--max-time=1.5", url},
		check: func(t *testing.T, o options) {
			if o.method != "PUT" || len(o.headers) != 1 || string(o.data.body) != "x" || !o.include || o.output != "f" ||
				!o.follow || !o.silent || !o.showErr || !o.fail || o.writeOut != "%{http_code}" || !o.verbose ||
				!o.insecure || o.timeout != 1500*time.Millisecond {
				t.Errorf("options = %+v", o)
			}
		},
	}, {
		name: "-I sends HEAD",
		args: []string{"-I", url},
		check: func(t *testing.T, o options) {
			if !o.head || o.method != "HEAD" {
				t.Errorf("head %v, method %q; want true, HEAD", o.head, o.method)
			}
		},
	}, {
		name: "the last protocol option wins",
		args: []string{"--http1.1", "--http3", url},
		check: func(t *testing.T, o options) {
			if o.first.http != "3" {
				t.Errorf("first = %+v, want HTTP/3", o.first)
			}
		},
	}, {
		name: "--legacy then --http2 keeps --legacy's TLS cap",
		args: []string{"--legacy", "--http2", url},
		check: func(t *testing.T, o options) {
			if want := (firstRequest{http: "2", maxTLS: tls.VersionTLS12}); o.first != want {
				t.Errorf("first = %+v, want %+v", o.first, want)
			}
		},
	}, {
		name: "--tlsv1.3 and --tls-max",
		args: []string{"--tlsv1.0", "--tlsv1.3", "--tls-max", "1.3", url},
		check: func(t *testing.T, o options) {
			if want := (firstRequest{minTLS: tls.VersionTLS13, maxTLS: tls.VersionTLS13}); o.first != want {
				t.Errorf("first = %+v, want %+v", o.first, want)
			}
		},
	}, {
		name: "-h needs no URL",
		args: []string{"-vh"},
		check: func(t *testing.T, o options) {
			if !o.help {
				t.Error("help not set")
			}
		},
	}, {
		name: "-m in fractions of a second",
		args: []string{"-m", "1.5", url},
		check: func(t *testing.T, o options) {
			if o.timeout != 1500*time.Millisecond {
				t.Errorf("timeout = %v, want 1.5s", o.timeout)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseArgs(tt.args, &stderr)
			if err != nil {
				t.Fatalf("parseArgs: %v; stderr:\n%s", err, &stderr)
			}
			tt.check(t, o)
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no URL", []string{"-v"}},
		{"two URLs", []string{"http://a.test", "http://b.test"}},
		{"-- makes what follows the URL", []string{"--", "http://a.test", "-v"}},
		{"option without its value", []string{"http://a.test", "-o"}},
		{"unknown letter in a combination", []string{"-vz", "http://a.test"}},
		{"value for a protocol option", []string{"--http3=no", "http://a.test"}},
		{"--tls-max below the least version", []string{"--tlsv1.3", "--tls-max", "1.2", "http://a.test"}},
		{"unknown -w variable", []string{"-w", "%{nope}", "http://a.test"}},
		{"unclosed -w variable", []string{"-w", "%{http_code", "http://a.test"}},
		{"not http", []string{"ftp://a.test/"}},
		{"no host", []string{"http:///x"}},
		{"header without colon", []string{"-H", "A 1", "http://a.test"}},
		{"header name not a token", []string{"-H", "A B: 1", "http://a.test"}},
		{"missing file", []string{"-d", "@" + filepath.Join(t.TempDir(), "none"), "http://a.test"}},
		{"bad TLS version", []string{"--min-tls", "1.1", "http://a.test"}},
		{"negative timeout", []string{"-m", "-1", "http://a.test"}},
		{"unknown flag", []string{"--nope", "http://a.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tt.args, io.Discard, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), "usage: h426") {
				t.Errorf("stderr has no usage:\n%s", &stderr)
			}
		})
	}
}

// The help text names every option newFlagSet declares.
func TestHelpNamesEveryOption(t *testing.T) {
	var o options
	var seconds float64
	newFlagSet(&o, &seconds).VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if len(f.Name) == 1 {
			name = "-" + f.Name + ","
		}
		if !strings.Contains(helpText, name) {
			t.Errorf("--help does not mention %s", name)
		}
	})
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		args       []string
		wantStdout string
	}{
		{[]string{"-h"}, "usage: h426 [options] URL\n"},
		{[]string{"--help"}, "usage: h426 [options] URL\n"},
		{[]string{"http://a.test", "--help"}, "usage: h426 [options] URL\n"},
		{[]string{"--version"}, "h426 "},
		{[]string{"-V"}, "h426 "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(tt.args...)
			if code != exitOK || !strings.HasPrefix(stdout, tt.wantStdout) || stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q…, nothing", code, stdout, stderr, tt.wantStdout)
			}
		})
	}
}
