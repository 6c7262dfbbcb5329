// Package upgradeuser tests github.com/h426/upgrade as a user would: from
// a module of its own, whose path is outside the library's, so that the
// compiler refuses any import of the library's internal packages. Each
// upgradetest server is met with an upgrade.Transport, and the test checks
// what the server received.
package upgradeuser
