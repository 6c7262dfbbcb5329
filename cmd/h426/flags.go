package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// options is what the command line asks for.
type options struct {
	method   string
	headers  headerFlag
	data     dataFlag
	include  bool   // -i
	head     bool   // -I
	output   string // -o; "" and "-" mean stdout
	follow   bool   // -L
	silent   bool   // -s
	showErr  bool   // -S: errors despite -s
	fail     bool   // -f
	writeOut writeOutFlag
	verbose  bool
	caFile   string
	insecure bool
	first    firstRequest   // what the first request offers
	minTLS   tlsVersionFlag // least TLS version for upgraded connections
	memory   string         // file the origin memory is loaded from and saved to
	timeout  time.Duration  // 0: no limit
	url      string
	help     bool
	version  bool
}

// firstRequest is what the first request offers: Base's protocols and TLS
// versions. Upgrades go beyond it when a server demands.
type firstRequest struct {
	http   string // "1.1", "2" or "3"; "" is Go's default, HTTP/2 or HTTP/1.1 by ALPN
	minTLS uint16 // 0: crypto/tls's default, TLS 1.2
	maxTLS uint16 // 0: crypto/tls's default, TLS 1.3
}

// newFlagSet declares every option, curl's one-letter and long names
// alike; help.go describes them.
func newFlagSet(o *options, seconds *float64) *flag.FlagSet {
	fs := flag.NewFlagSet("h426", flag.ContinueOnError)
	both := func(short, long string, declare func(name string)) {
		declare(short)
		declare(long)
	}
	both("X", "request", func(n string) { fs.StringVar(&o.method, n, "", "") })
	both("H", "header", func(n string) { fs.Var(&o.headers, n, "") })
	both("d", "data", func(n string) { fs.Var(&o.data, n, "") })
	both("i", "include", func(n string) { fs.BoolVar(&o.include, n, false, "") })
	both("I", "head", func(n string) { fs.BoolVar(&o.head, n, false, "") })
	both("o", "output", func(n string) { fs.StringVar(&o.output, n, "", "") })
	both("L", "location", func(n string) { fs.BoolVar(&o.follow, n, false, "") })
	both("s", "silent", func(n string) { fs.BoolVar(&o.silent, n, false, "") })
	both("S", "show-error", func(n string) { fs.BoolVar(&o.showErr, n, false, "") })
	both("f", "fail", func(n string) { fs.BoolVar(&o.fail, n, false, "") })
	both("w", "write-out", func(n string) { fs.Var(&o.writeOut, n, "") })
	both("v", "verbose", func(n string) { fs.BoolVar(&o.verbose, n, false, "") })
	both("k", "insecure", func(n string) { fs.BoolVar(&o.insecure, n, false, "") })
	both("m", "max-time", func(n string) { fs.Float64Var(seconds, n, 30, "") })
	both("h", "help", func(n string) { fs.BoolVar(&o.help, n, false, "") })
	both("V", "version", func(n string) { fs.BoolVar(&o.version, n, false, "") })
	fs.StringVar(&o.caFile, "cacert", "", "")
	fs.Var(&o.minTLS, "min-tls", "")
	fs.StringVar(&o.memory, "memory", "", "")

	// The last of the protocol options wins, as in curl.
	for _, v := range []string{"1.1", "2", "3"} {
		fs.Var(setter(func() { o.first.http = v }), "http"+v, "")
	}
	for _, v := range []string{"1.0", "1.1", "1.2", "1.3"} {
		fs.Var(setter(func() { o.first.minTLS = tlsVersions[v] }), "tlsv"+v, "")
	}
	fs.Var((*tlsMaxFlag)(&o.first.maxTLS), "tls-max", "")
	fs.Var(setter(func() { o.first.http, o.first.maxTLS = "1.1", tls.VersionTLS12 }), "legacy", "")
	return fs
}

// parseArgs reads the options and exactly one URL. Errors are reported on
// stderr before they are returned.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	var seconds float64
	fs := newFlagSet(&o, &seconds)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, shortUsage) }
	ordered, err := flagsFirst(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "h426: %v\n", err)
		fs.Usage()
		return options{}, err
	}
	if err := fs.Parse(ordered); err != nil {
		return options{}, err // the flag package has said why
	}
	if o.help || o.version {
		return o, nil
	}
	if err := o.finish(fs.Args(), seconds); err != nil {
		fmt.Fprintf(stderr, "h426: %v\n", err)
		fs.Usage()
		return options{}, err
	}
	return o, nil
}

// flagsFirst reorders args for the flag package, which stops at the first
// argument that is not a flag: options may come after the URL, as curl
// allows. A cluster of one-letter options ("-sSf", "-vo FILE", "-XPUT") is
// split into single ones. "--" ends the options. What is not an option
// known here is passed on for the flag package to report.
func flagsFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, rest []string
	// value appends the argument after args[i] as the value of option name.
	value := func(i *int, name string) error {
		if *i+1 >= len(args) {
			return fmt.Errorf("option %s needs a value", name)
		}
		*i++
		flags = append(flags, args[*i])
		return nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			rest = append(rest, arg) // "-" too: it is no option
			continue
		}
		body := strings.TrimPrefix(arg[1:], "-")
		name, _, hasValue := strings.Cut(body, "=")
		if f := fs.Lookup(name); f != nil {
			flags = append(flags, arg)
			if !isBool(f) && !hasValue {
				if err := value(&i, arg); err != nil {
					return nil, err
				}
			}
			continue
		}
		if strings.HasPrefix(arg, "--") {
			flags = append(flags, arg)
			continue
		}
	cluster:
		for j, letter := range body {
			short := "-" + string(letter)
			flags = append(flags, short) // if unknown, the flag package says so
			f := fs.Lookup(string(letter))
			if f == nil || isBool(f) {
				continue
			}
			if attached := body[j+len(string(letter)):]; attached != "" {
				flags = append(flags, attached) // "-XPUT", "-ofile"
				break cluster
			}
			if err := value(&i, short); err != nil {
				return nil, err
			}
			break cluster
		}
	}
	return append(append(flags, "--"), rest...), nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// finish checks what the flag package cannot: the URL and the timeout.
func (o *options) finish(rest []string, seconds float64) error {
	switch {
	case len(rest) == 0:
		return errors.New("no URL given")
	case len(rest) > 1:
		return fmt.Errorf("one URL expected, got %q", rest)
	case seconds < 0:
		return fmt.Errorf("-m %v: must not be negative", seconds)
	case o.first.minTLS != 0 && o.first.maxTLS != 0 && o.first.maxTLS < o.first.minTLS:
		return fmt.Errorf("--tls-max %s is below the least version asked, %s",
			tls.VersionName(o.first.maxTLS), tls.VersionName(o.first.minTLS))
	}
	u, err := url.Parse(rest[0])
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL", rest[0])
	}
	o.url = rest[0]
	o.timeout = time.Duration(seconds * float64(time.Second))
	if o.head && o.method == "" {
		o.method = "HEAD"
	}
	return nil
}

// setter is a boolean option that runs set when given.
type setter func()

func (s setter) String() string   { return "" }
func (s setter) IsBoolFlag() bool { return true }

func (s setter) Set(value string) error {
	if value != "true" {
		return fmt.Errorf("takes no value, got %q", value)
	}
	s()
	return nil
}

// header is one -H option.
type header struct{ name, value string }

// headerFlag collects -H options in order.
type headerFlag []header

func (h *headerFlag) String() string {
	lines := make([]string, len(*h))
	for i, f := range *h {
		lines[i] = f.name + ": " + f.value
	}
	return strings.Join(lines, ", ")
}

func (h *headerFlag) Set(line string) error {
	name, value, ok := strings.Cut(line, ":")
	value = strings.TrimSpace(value)
	switch {
	case !ok:
		return errors.New("want 'Name: value'")
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Errorf("%q is not a valid header name", name)
	case !httpguts.ValidHeaderFieldValue(value):
		return fmt.Errorf("%q is not a valid header value", value)
	}
	*h = append(*h, header{name: name, value: value})
	return nil
}

// dataFlag is the body from -d options; set tells an empty -d from none.
type dataFlag struct {
	set  bool
	body []byte
}

func (d *dataFlag) String() string { return string(d.body) }

// Set reads "@file" at once, so a missing file is a usage error.
func (d *dataFlag) Set(arg string) error {
	part := []byte(arg)
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		if part, err = os.ReadFile(name); err != nil {
			return err
		}
	}
	if d.set {
		d.body = append(d.body, '&') // as curl joins repeated -d
	}
	d.body = append(d.body, part...)
	d.set = true
	return nil
}

// tlsVersions are the versions the options name, as curl writes them.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// tlsVersionFlag is --min-tls; zero leaves the library's floor, TLS 1.2.
// Upgraded connections never go below TLS 1.2.
type tlsVersionFlag uint16

func (v *tlsVersionFlag) String() string { return versionString(uint16(*v)) }

func (v *tlsVersionFlag) Set(s string) error {
	switch s {
	case "1.2", "1.3":
		*v = tlsVersionFlag(tlsVersions[s])
		return nil
	}
	return errors.New("want 1.2 or 1.3")
}

// tlsMaxFlag is --tls-max, the highest TLS version the first request offers.
type tlsMaxFlag uint16

func (v *tlsMaxFlag) String() string { return versionString(uint16(*v)) }

func (v *tlsMaxFlag) Set(s string) error {
	version, ok := tlsVersions[s]
	if !ok {
		return errors.New("want 1.0, 1.1, 1.2 or 1.3")
	}
	*v = tlsMaxFlag(version)
	return nil
}

func versionString(v uint16) string {
	if v == 0 {
		return ""
	}
	return tls.VersionName(v)
}
