// Command deployhook validates cluster.conf and moves the component data of
// the Job Manager, Package Manager and Auth Server from PostgreSQL (store2)
// to Consul KV (store3) at deploy time. See README.md.
package main

import (
	"os"
)

func main() {
	os.Exit(runMain(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
