//go:build tools

// Package tools pins the Consul server the integration tests and the demo
// run against. v1.16.1 is the last MPL-2.0 release; later ones are BUSL.
package tools

import _ "github.com/hashicorp/consul"
