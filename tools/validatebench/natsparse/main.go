// Command natsparse parses one file with the NATS server config parser, the
// baseline of the validator benchmark: it exits 0 when the file parses, 1
// with the parser's error otherwise.
package main

import (
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/conf"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: natsparse FILE")
		os.Exit(2)
	}
	m, err := conf.ParseFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsparse:", err)
		os.Exit(1)
	}
	fmt.Printf("%d top-level keys\n", len(m))
}
