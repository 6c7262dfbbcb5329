package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/h426/upgrade"
)

// transferInfo is what -w can print about a transfer.
type transferInfo struct {
	status       int // 0 when no response came
	major, minor int // HTTP version
	url          string
	contentType  string
	size         int64 // body bytes written
	elapsed      time.Duration
}

func infoOf(resp *http.Response) transferInfo {
	return transferInfo{
		status:      resp.StatusCode,
		major:       resp.ProtoMajor,
		minor:       resp.ProtoMinor,
		url:         resp.Request.URL.String(),
		contentType: resp.Header.Get("Content-Type"),
	}
}

// writeOutVars are the %{name} variables -w knows, named and written as
// curl writes them.
var writeOutVars = map[string]func(transferInfo) string{
	"http_code": func(t transferInfo) string { return fmt.Sprintf("%03d", t.status) },
	"http_version": func(t transferInfo) string {
		switch {
		case t.status == 0:
			return "0"
		case t.major >= 2:
			return fmt.Sprint(t.major) // curl writes "2" and "3", not "2.0"
		}
		return fmt.Sprintf("%d.%d", t.major, t.minor)
	},
	"url_effective": func(t transferInfo) string { return t.url },
	"content_type":  func(t transferInfo) string { return t.contentType },
	"size_download": func(t transferInfo) string { return fmt.Sprint(t.size) },
	"time_total":    func(t transferInfo) string { return fmt.Sprintf("%.6f", t.elapsed.Seconds()) },
}

// writeOutFlag is -w's format, checked when given.
type writeOutFlag string

func (f *writeOutFlag) String() string { return string(*f) }

func (f *writeOutFlag) Set(format string) error {
	if _, err := expandFormat(format, transferInfo{}); err != nil {
		return err
	}
	*f = writeOutFlag(format)
	return nil
}

// expand returns format with its variables and escapes replaced; Set has
// checked it.
func (t transferInfo) expand(format string) string {
	s, _ := expandFormat(format, t)
	return s
}

// expandFormat replaces %{name}, %%, and the escapes \n \r \t \\ as curl does.
func expandFormat(format string, t transferInfo) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '%' && strings.HasPrefix(format[i:], "%%"):
			b.WriteByte('%')
			i++
		case c == '%' && strings.HasPrefix(format[i:], "%{"):
			name, _, ok := strings.Cut(format[i+2:], "}")
			if !ok {
				return "", fmt.Errorf("unclosed %%{ in %q", format)
			}
			value, known := writeOutVars[name]
			if !known {
				return "", fmt.Errorf("unknown variable %%{%s}; known: %s", name, strings.Join(slices.Sorted(maps.Keys(writeOutVars)), ", "))
			}
			b.WriteString(value(t))
			i += len("%{}") + len(name) - 1
		case c == '\\' && i+1 < len(format) && escapes[format[i+1]] != 0:
			b.WriteByte(escapes[format[i+1]])
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// escapes are the backslash escapes -w knows.
var escapes = map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', '\\': '\\'}

// openOutput returns where the body goes: -o's file, or stdout for "" and
// "-". The file is created only once there is a body to write.
func openOutput(name string, stdout io.Writer) (io.Writer, func() error, error) {
	if name == "" || name == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// writeHead prints the status line and the headers in sorted order.
func writeHead(w io.Writer, resp *http.Response) {
	fmt.Fprintf(w, "%s %s\n", resp.Proto, resp.Status)
	for _, name := range slices.Sorted(maps.Keys(resp.Header)) {
		for _, value := range resp.Header[name] {
			fmt.Fprintf(w, "%s: %s\n", name, value)
		}
	}
	fmt.Fprintln(w)
}

// reportError prints err and, for a failed upgrade, every attempt.
func reportError(w io.Writer, err error) {
	fmt.Fprintf(w, "h426: %v\n", err)
	var failed *upgrade.UpgradeError
	if !errors.As(err, &failed) {
		return
	}
	fmt.Fprintf(w, "h426: the 426 offered: %s\n", protocolList(failed.Offered))
	for _, a := range failed.Attempts {
		fmt.Fprintf(w, "h426:   %s: %v\n", a.Protocol, a.Err)
	}
}
