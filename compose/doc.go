// Package compose shows, in its tests and examples, how upgrade.Transport
// composes with common HTTP client middleware: golang.org/x/oauth2,
// otelhttp (OpenTelemetry) and hashicorp/go-retryablehttp.
//
// The rule: middleware goes outside the upgrade.Transport, and the
// upgrade.Transport's Base is the *http.Transport itself:
//
//	base := &http.Transport{ /* roots, proxy, dialer, timeouts */ }
//	up := &upgrade.Transport{Base: base}
//	client := &http.Client{Transport: otelhttp.NewTransport(up)}
//
// Then every request passes through the middleware, the first one the
// server refused with 426, its replay and every later request that goes
// straight over the remembered protocol; and the upgraded connections
// inherit the roots, proxy and dialer of base.
//
// The package has no API. It is a separate module so that the upgrade
// module does not depend on the middleware it is tested with.
package compose
