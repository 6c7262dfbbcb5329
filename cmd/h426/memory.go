package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/h426/upgrade"
)

// loadMemory imports the origin memory from file; a missing file is an
// empty memory, so the first run creates it.
func loadMemory(transport *upgrade.Transport, file string, warnings io.Writer) error {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, skipped, err := transport.ImportMemory(f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if skipped > 0 {
		fmt.Fprintf(warnings, "h426: %s: skipped %d expired or invalid entries\n", file, skipped)
	}
	return nil
}

// memoryEntry is one entry of the memory's file form (see
// upgrade.Transport.ExportMemory).
type memoryEntry struct {
	Origin   string    `json:"origin"`
	Host     string    `json:"host,omitempty"`
	Protocol string    `json:"protocol"`
	Expires  time.Time `json:"expires"`
}

// preferHTTP3 is --http3. It tells the origin memory the origin demanded
// HTTP/3, so the first request goes straight over it, and a QUIC that gets
// no answer falls back to Base, as curl --http3 falls back to TCP. It
// returns that entry, for saveMemory to leave out, or nil when HTTP/3
// cannot serve the request (http://, a proxy): then it goes as without
// --http3, as with curl.
func preferHTTP3(transport *upgrade.Transport, req *http.Request, warnings io.Writer) (*memoryEntry, error) {
	if req.URL.Scheme != "https" {
		fmt.Fprintln(warnings, "h426: --http3 applies to https:// URLs only")
		return nil, nil
	}
	port := req.URL.Port()
	if port == "" {
		port = "443"
	}
	seed := &memoryEntry{
		Origin:   "https://" + net.JoinHostPort(strings.ToLower(req.URL.Hostname()), port),
		Protocol: "HTTP/3",
		Expires:  time.Now().Add(time.Hour).UTC(),
	}
	if req.Host != req.URL.Host {
		seed.Host = req.Host
	}
	file, err := json.Marshal(map[string]any{"version": 1, "entries": []*memoryEntry{seed}})
	if err != nil {
		return nil, err
	}
	imported, _, err := transport.ImportMemory(bytes.NewReader(file))
	if err != nil {
		return nil, err
	}
	if imported == 0 {
		fmt.Fprintln(warnings, "h426: --http3: HTTP/3 cannot reach this URL from here (a proxy?); going without it")
		return nil, nil
	}
	return seed, nil
}

// saveMemory writes the origin memory to file, replacing it whole. It
// leaves out seed: that the user asked for HTTP/3 once does not mean the
// origin demands it.
func saveMemory(transport *upgrade.Transport, file string, seed *memoryEntry) error {
	var buf bytes.Buffer
	if err := transport.ExportMemory(&buf); err != nil {
		return err
	}
	saved := buf.Bytes()
	if seed != nil {
		var err error
		if saved, err = without(saved, *seed); err != nil {
			return err
		}
	}
	return os.WriteFile(file, saved, 0o600)
}

// without returns the exported memory with entry left out, and every other
// field as it was.
func without(exported []byte, entry memoryEntry) ([]byte, error) {
	var file map[string]json.RawMessage
	if err := json.Unmarshal(exported, &file); err != nil {
		return nil, err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(file["entries"], &entries); err != nil {
		return nil, err
	}
	kept := []json.RawMessage{}
	for _, raw := range entries {
		var e memoryEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, err
		}
		if e.Origin == entry.Origin && e.Host == entry.Host && e.Protocol == entry.Protocol && e.Expires.Equal(entry.Expires) {
			continue
		}
		kept = append(kept, raw)
	}
	var err error
	if file["entries"], err = json.Marshal(kept); err != nil {
		return nil, err
	}
	out, err := json.Marshal(file)
	return append(out, '\n'), err
}
