package main

import (
	"testing"
	"time"
)

// -w's variables and escapes, as curl writes them.
func TestExpandFormat(t *testing.T) {
	info := transferInfo{status: 200, major: 2, url: "https://a.test/", contentType: "text/plain", size: 3, elapsed: 1500 * time.Millisecond}
	tests := []struct {
		name, format string
		info         transferInfo
		want         string
	}{
		{"code and version over HTTP/2", `%{http_code} %{http_version}\n`, info, "200 2\n"},
		{"HTTP/3", "%{http_version}", transferInfo{status: 200, major: 3}, "3"},
		{"HTTP/1.1", "%{http_version}", transferInfo{status: 200, major: 1, minor: 1}, "1.1"},
		{"no response", "%{http_code} %{http_version}", transferInfo{}, "000 0"},
		{"the rest", "%{url_effective} %{content_type} %{size_download} %{time_total}", info, "https://a.test/ text/plain 3 1.500000"},
		{"escapes", `a\tb\r\\%%`, info, "a\tb\r\\%"},
		{"a lone % or \\ is kept", `100% \x`, info, `100% \x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expandFormat(tt.format, tt.info)
			if err != nil || got != tt.want {
				t.Errorf("expandFormat(%q) = %q, %v; want %q", tt.format, got, err, tt.want)
			}
		})
	}
}
