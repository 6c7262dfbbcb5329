// A module of a user's own, outside github.com/h426/upgrade's path, so
// that its tests can import only what a user can: the public packages.
module example.com/upgradeuser

go 1.26.0

replace github.com/h426/upgrade => ../

require (
	github.com/h426/upgrade v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/hashicorp/golang-lru/v2 v2.0.7 // indirect
	github.com/quic-go/qpack v0.6.0 // indirect
	github.com/quic-go/quic-go v0.65.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
