package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// commands is the command line, in the order help lists it. Each command
// is defined in a file of its own; adding one is one line here.
func commands() []*cli.Command {
	return []*cli.Command{
		validateCommand(),
		runCommand(),
		migrateCommand(),
		statusCommand(),
		waitCommand(),
		verifyCommand(),
		unfreezeCommand(),
		completionCommand(),
		manCommand(),
	}
}

// newApp builds the command line.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                      "deployhook",
		Usage:                     "validate cluster.conf and migrate component data from store2 (PostgreSQL) to store3 (Consul)",
		Version:                   toolVersion(),
		Reader:                    stdin,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		DisableSliceFlagSeparator: true, // -f paths may hold commas
		HideHelpCommand:           true,
		EnableBashCompletion:      true,
		ExitErrHandler:            func(*cli.Context, error) {}, // runMain owns exiting
		Flags:                     []cli.Flag{noColorFlag},
		OnUsageError:              usageError,
		Action:                    noCommand,
	}
	app.Commands = commands()
	for _, c := range app.Commands {
		prepare(c)
	}
	return app
}

// prepare gives every command the same usage-error handling: one line on
// standard error and exit 2, never a help page nobody asked for. (No flag
// may be marked Required: urfave/cli answers a missing one with the whole
// help page on stdout and exit 1. requireFlags checks them instead, and
// TestNoRequiredFlags keeps it so.)
func prepare(c *cli.Command) {
	c.OnUsageError = usageError
	c.HideHelpCommand = true
}

// noCommand is the app's action: reached without a command, or with one
// that does not exist.
func noCommand(c *cli.Context) error {
	switch name := c.Args().First(); {
	case name == "help":
		if cmd := c.Args().Get(1); cmd != "" {
			return cli.ShowCommandHelp(c, cmd)
		}
		return cli.ShowAppHelp(c)
	case name != "":
		return usagef(c, "unknown command %q", name)
	}
	return usagef(c, "no command given")
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
	if msg := messageOf(err); msg != "" {
		fmt.Fprintf(stderr, "deployhook: %s\n", msg)
	}
	return code
}

// usageError turns a command-line parsing error (an unknown flag, a bad
// value) into exit code 2.
func usageError(c *cli.Context, err error, _ bool) error {
	return usagef(c, "%v", err)
}

// usagef is a usage error of the command c runs: exit 2, one line naming
// the problem and the help to read.
func usagef(c *cli.Context, format string, args ...interface{}) error {
	help := c.App.Name + " --help"
	where := ""
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		help = c.App.Name + " " + c.Command.Name + " --help"
		where = c.Command.Name + ": "
	}
	return &exitError{code: exitUsage, err: fmt.Errorf("%s%s; run '%s'", where, fmt.Sprintf(format, args...), help)}
}

// requireFlags checks the flags a command cannot run without, and that it
// got no positional arguments when it takes none.
func requireFlags(names ...string) cli.BeforeFunc {
	return func(c *cli.Context) error {
		for _, n := range names {
			if !c.IsSet(n) {
				return usagef(c, "missing required flag -%s", n)
			}
		}
		return nil
	}
}

// noArgs refuses positional arguments: flags come before arguments, so a
// stray word usually hides a flag that was not parsed.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef(c, "unexpected argument %q (this command takes flags only, and flags come before arguments)", c.Args().First())
	}
	return nil
}
