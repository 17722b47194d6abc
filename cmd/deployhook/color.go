package main

import (
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// noColorFlag turns colour off; it is accepted before the command and
// after it.
var noColorFlag = &cli.BoolFlag{Name: "no-color", Usage: "no ANSI colour (also: NO_COLOR set, TERM=dumb, output not a terminal)"}

// useColor is the one colour rule: ANSI colour only when w is a terminal
// that understands escapes (TERM is not "dumb"), NO_COLOR is not set to a
// non-empty value (no-color.org), and --no-color was not given.
func useColor(c *cli.Context, w io.Writer) bool {
	return ansiTerminal(w) && os.Getenv("NO_COLOR") == "" && !c.Bool(noColorFlag.Name)
}

// ansiTerminal reports whether w is a terminal that takes ANSI escapes:
// what the progress bar needs, colour or not.
func ansiTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}
