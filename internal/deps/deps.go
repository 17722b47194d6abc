//go:build deps

// Package deps keeps the project's direct dependencies in go.mod while the
// packages that use them are being written. Deleted once they all are.
package deps

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/consul/api"
	_ "github.com/hashicorp/hcl/v2"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)
