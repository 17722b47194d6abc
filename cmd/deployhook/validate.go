package main

import (
	"fmt"
	"io"
	"os"

	"github.com/apcera/deployhook/validate"
	"github.com/hashicorp/hcl/v2"
	"github.com/urfave/cli/v2"
)

// stdinName is how standard input ("-") is named in diagnostics.
const stdinName = "<stdin>"

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check cluster.conf files (syntax, the store settings, the components they need)",
		ArgsUsage: "FILE... (- reads standard input)",
		Description: "Reports every problem as file:line:col with the source line and a caret; secret values show as ****.\n" +
			"Exit status: 0 no errors (warnings allowed), 3 errors, 2 usage error or unreadable file.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: formatText, Usage: "output `FORMAT`: text or json (one array of diagnostics)"},
			noColorFlag,
		},
		Action: runValidate,
	}
}

func runValidate(ctx *cli.Context) error {
	format, err := outputFormat(ctx)
	if err != nil {
		return err
	}
	if ctx.NArg() == 0 {
		return usagef(ctx, "no FILE given (use - for standard input)")
	}
	stdout, stderr := ctx.App.Writer, ctx.App.ErrWriter
	p := validate.NewPrinter(useColor(ctx, stdout))
	var all hcl.Diagnostics
	unreadable := false
	for _, name := range ctx.Args().Slice() {
		src, shown, err := readInput(ctx.App.Reader, name)
		if err != nil {
			fmt.Fprintf(stderr, "deployhook: validate: %v\n", err)
			unreadable = true
			continue
		}
		c, diags := validate.ClusterConf(src, shown)
		p.Add(shown, src, c.File)
		all = append(all, diags...)
	}
	if format == formatJSON {
		err = validate.WriteJSON(stdout, all)
	} else {
		err = p.WriteText(stdout, all)
	}
	switch {
	case err != nil:
		return fmt.Errorf("validate: write output: %w", err)
	case unreadable:
		return silent(exitUsage)
	case all.HasErrors():
		return silent(exitInvalid)
	}
	return nil
}

// readInput reads a FILE argument; "-" is standard input.
func readInput(stdin io.Reader, name string) ([]byte, string, error) {
	if name == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, stdinName, fmt.Errorf("read standard input: %w", err)
		}
		return b, stdinName, nil
	}
	b, err := readFile(name)
	return b, name, err
}
