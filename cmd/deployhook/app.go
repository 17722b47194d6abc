package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is what .done records as tool_version.
var version = "0.1.0"

// newApp builds the command line. Every command is defined in a file of its
// own (validate.go, migrate.go, ...).
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                      "deployhook",
		Usage:                     "validate cluster.conf and migrate component data from store2 (PostgreSQL) to store3 (Consul)",
		Version:                   version,
		Reader:                    stdin,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		DisableSliceFlagSeparator: true, // -f paths may hold commas
		HideHelpCommand:           true,
		ExitErrHandler:            func(*cli.Context, error) {}, // runMain owns exiting
		Commands:                  commands(),
		OnUsageError:              usageError,
	}
	return app
}

// commands lists the subcommands; each file registers its own.
var registered []func() *cli.Command

func commands() []*cli.Command {
	var cs []*cli.Command
	for _, f := range registered {
		c := f()
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
		cs = append(cs, c)
	}
	return cs
}

// runMain runs the app and returns the process exit code. SIGINT and SIGTERM
// cancel the context given to commands; a command cut short by them exits 6.
func runMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := newApp(stdin, stdout, stderr).RunContext(ctx, args)
	code := codeOf(err)
	if err != nil && code == exitFailure && ctx.Err() != nil {
		code = exitInterrupted
	}
	var e *exitError
	if err != nil && !(errors.As(err, &e) && e.err == nil) {
		fmt.Fprintf(stderr, "deployhook: %v\n", err)
	}
	return code
}

// usageError turns a command-line parsing error into exit code 2.
func usageError(_ *cli.Context, err error, _ bool) error {
	return withCode(exitUsage, err)
}
