package upgrade

import (
	"bufio"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func header(lines ...string) http.Header {
	h := http.Header{}
	for _, l := range lines {
		h.Add("Upgrade", l)
	}
	return h
}

func TestParseUpgrade(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []Protocol
	}{
		{"absent", nil, nil},
		{"empty line", []string{""}, nil},
		{"only commas and spaces", []string{" , ,\t,"}, nil},
		{"CUPS", []string{"TLS/1.2,TLS/1.1,TLS/1.0"}, []Protocol{{"TLS", "1.2"}, {"TLS", "1.1"}, {"TLS", "1.0"}}},
		{"old Apache mod_ssl", []string{"TLS/1.0, HTTP/1.1"}, []Protocol{{"TLS", "1.0"}, {"HTTP", "1.1"}}},
		{"HAProxy lower case", []string{"HTTP/2.0"}, []Protocol{{"HTTP", "2.0"}}},
		{"HTTP/3", []string{"HTTP/3"}, []Protocol{{"HTTP", "3"}}},
		{"h2c", []string{"h2c"}, []Protocol{{"h2c", ""}}},
		{"websocket", []string{"websocket"}, []Protocol{{"websocket", ""}}},
		{"several lines keep order", []string{"h2c", "HTTP/2, TLS/1.3"}, []Protocol{{"h2c", ""}, {"HTTP", "2"}, {"TLS", "1.3"}}},
		{"whitespace and empty elements", []string{" \tHTTP/2 ,, ,websocket\t"}, []Protocol{{"HTTP", "2"}, {"websocket", ""}}},
		{"exactly 32", []string{strings.Repeat("a,", 32)}, repeatProtocol(Protocol{"a", ""}, 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUpgrade(header(tt.lines...))
			if err != nil {
				t.Fatalf("ParseUpgrade: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func repeatProtocol(p Protocol, n int) []Protocol {
	ps := make([]Protocol, n)
	for i := range ps {
		ps[i] = p
	}
	return ps
}

func TestParseUpgradeLowerCaseHeaderName(t *testing.T) {
	// HAProxy writes "upgrade:" on the wire; it must still be found.
	raw := "HTTP/1.1 426 Upgrade Required\r\nupgrade: HTTP/2.0\r\nContent-Length: 0\r\n\r\n"
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseUpgrade(resp.Header)
	if err != nil || len(got) != 1 || !got[0].Is("http", "2.0") {
		t.Fatalf("got %v, %v; want [HTTP/2.0]", got, err)
	}
}

func TestParseUpgradeErrors(t *testing.T) {
	tests := []struct {
		name        string
		lines       []string
		wantElement string
		wantIndex   int
	}{
		{"space inside a name", []string{"HTTP/2, web socket"}, "web socket", 1},
		{"empty version", []string{"TLS/"}, "TLS/", 0},
		{"empty name", []string{"/1.1"}, "/1.1", 0},
		{"two slashes", []string{"a/b/c"}, "a/b/c", 0},
		{"separator in name", []string{"h2;q=1"}, "h2;q=1", 0},
		{"non-ASCII", []string{"h\xc3\xa92"}, "h\xc3\xa92", 0},
		{"error on a later line", []string{"h2c", "HTTP/2", "TLS/1.3 x"}, "TLS/1.3 x", 2},
		{"33 protocols", []string{strings.Repeat("a,", 33)}, "", 0},
		{"over 8 KiB", []string{strings.Repeat("a", 8<<10+1)}, "", 0},
		// Refused by its size before any element is looked at.
		{"100 KiB of junk", []string{strings.Repeat("a/b;\x00,", 100<<10/7)}, "", 0},
		{"over 8 KiB across lines", []string{strings.Repeat("a", 5<<10), strings.Repeat("b", 5<<10)}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUpgrade(header(tt.lines...))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, %v; want a *ParseError", got, err)
			}
			if pe.Element != tt.wantElement || pe.Index != tt.wantIndex {
				t.Errorf("ParseError element %q index %d, want %q index %d", pe.Element, pe.Index, tt.wantElement, tt.wantIndex)
			}
			if !strings.HasPrefix(pe.Error(), "upgrade: ") || pe.Reason == "" {
				t.Errorf("message %q lacks prefix or reason", pe.Error())
			}
			if got != nil {
				t.Errorf("got protocols %v with an error", got)
			}
		})
	}
}

func TestParseErrorElementIsShortened(t *testing.T) {
	_, err := ParseUpgrade(header(strings.Repeat("x", 1000) + " y"))
	var pe *ParseError
	if !errors.As(err, &pe) || len(pe.Element) > 64 {
		t.Fatalf("got %v; want a *ParseError with an element of at most 64 bytes", err)
	}
}

func TestProtocolString(t *testing.T) {
	for _, p := range []Protocol{{"TLS", "1.3"}, {"h2c", ""}, {"HTTP", "2.0"}} {
		got, err := ParseUpgrade(header(p.String()))
		if err != nil || len(got) != 1 || got[0] != p {
			t.Errorf("%v round-trips to %v, %v", p, got, err)
		}
	}
}

func FuzzParseUpgrade(f *testing.F) {
	for _, seed := range []string{
		"TLS/1.2,TLS/1.1,TLS/1.0",
		"TLS/1.0, HTTP/1.1",
		"HTTP/2.0",
		"HTTP/3",
		"h2c",
		"websocket",
		"",
		" , ,",
		"web socket",
		strings.Repeat("junk/\x00;", 100<<10/7),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		h := http.Header{"Upgrade": strings.Split(value, "\n")}
		got, err := ParseUpgrade(h)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || got != nil {
				t.Fatalf("error %v is not a lone *ParseError (got %v)", err, got)
			}
			return
		}
		if len(got) > maxOfferedProtocols {
			t.Fatalf("%d protocols accepted", len(got))
		}
		for _, p := range got {
			if !isToken(p.Name) || (p.Version != "" && !isToken(p.Version)) {
				t.Fatalf("accepted non-token %q", p)
			}
			// Every accepted protocol parses back to itself.
			again, err := ParseUpgrade(header(p.String()))
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("%q does not round-trip: %v, %v", p, again, err)
			}
		}
	})
}

func BenchmarkParseUpgrade(b *testing.B) {
	for _, bc := range []struct{ name, value string }{
		{"cups", "TLS/1.2,TLS/1.1,TLS/1.0"},
		{"ten", "HTTP/3, h3, HTTP/2, h2, h2c, TLS/1.3, TLS/1.2, TLS/1.1, TLS/1.0, websocket"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := header(bc.value)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseUpgrade(h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
