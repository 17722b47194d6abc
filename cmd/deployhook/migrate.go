package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/runitlog"
	"github.com/apcera/deployhook/validate"
)

func init() { registered = append(registered, migrateCommand) }

// workerFlag marks the detached background process that `run` starts. It
// logs to the component's runit log directory instead of standard error.
var workerFlag = &cli.BoolFlag{Name: "worker", Hidden: true}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "migrate one component from store2 to store3 in the foreground (or dry-run it)",
		ArgsUsage: " ",
		Description: `Takes the component's Consul lock, copies every store2 record into store3
with fenced transactions, catches up with what the running components wrote
meanwhile, freezes store2 for writes, verifies the copy against the frozen
store2 and writes the done marker (--offline: no catch-up and no freeze; the
components must be stopped).
Exit codes: 0 done or already done, 1 unexpected failure, 2 usage,
3 invalid or refused, 4 lock timeout, 5 migration failed, 6 interrupted.`,
		Flags: []cli.Flag{
			confFlag, kindFlag, migrateFlag, hostnameFlag,
			&cli.BoolFlag{Name: "dry_run_store_migration", Usage: "check everything a migration needs without writing anything"},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "give up (exit 4) when the lock is not acquired within `D`; 0 waits for ever"},
			&cli.DurationFlag{Name: "retry-for", Value: 2 * time.Minute, Usage: "keep retrying an unreachable PostgreSQL or Consul for `D` before giving up (exit 1)"},
			offlineFlag, catchUpThresholdFlag, catchUpRoundsFlag,
			&cli.BoolFlag{Name: "accept-store2-revert", Usage: "when the migration is done, unfreeze store2 anyway (components back on store2 lose what store3 got since)"},
			workerFlag,
		},
		Action: runMigrate,
	}
}

func runMigrate(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitf(exitUsage, "migrate takes no arguments, got %q (flags come before arguments)", c.Args().First())
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	if len(comps) != 1 {
		return exitf(exitUsage, "migrate takes exactly one -f component conf, got %d", len(comps))
	}
	comp := comps[0]
	if !migrate.Migrates(comp.Kind, comp.Migrate) {
		return exitf(exitInvalid, "%s: %s is on %s with migrate_store2_to_store3 = %t: nothing to migrate; set db.kind = store3 and db.migrate_store2_to_store3 = true (or pass -db.kind store3 -db.migrate_store2_to_store3)",
			comp.File, comp.Name, comp.Kind, comp.Migrate)
	}
	if c.Bool(workerFlag.Name) {
		return runWorker(c, comp)
	}
	out := c.App.ErrWriter
	var bar *progress
	if isTerminal(out) && !c.Bool("dry_run_store_migration") {
		bar = newProgress(out)
		defer bar.Finish()
		out = bar
	}
	return migrateComponent(c, comp, out, bar)
}

// migrateComponent runs the migration (or the dry run) of comp, logging to
// w, and maps the outcome to an exit code.
func migrateComponent(c *cli.Context, comp *validate.Component, w io.Writer, bar *progress) error {
	ctx := c.Context
	src, kv, err := stores(ctx, comp)
	if err != nil {
		return err
	}
	defer src.Close()
	opts := migrate.Options{
		Component:   comp.Name,
		Prefix:      comp.Consul.Prefix,
		Hostname:    hostname(c),
		PID:         os.Getpid(),
		LockTimeout: c.Duration("lock-timeout"),
		Retry:       migrate.Backoff{GiveUp: c.Duration("retry-for")},
		ToolVersion: version,
		Log:         newLog(w),

		Offline:            c.Bool(offlineFlag.Name),
		CatchUpThreshold:   c.Int(catchUpThresholdFlag.Name),
		CatchUpRounds:      c.Int(catchUpRoundsFlag.Name),
		AcceptStore2Revert: c.Bool("accept-store2-revert"),
	}
	if err := checkCatchUpFlags(c); err != nil {
		return err
	}
	if bar != nil {
		opts.Progress = bar.Update
	}
	m := &migrate.Migrator{Source: src, KV: kv, Locker: kv, Opts: opts}
	if c.Bool("dry_run_store_migration") {
		rep, err := m.DryRun(ctx)
		if rep != nil {
			writeDryRun(c.App.Writer, comp, rep)
		}
		return withCode(migrationCode(ctx, err), err)
	}
	_, err = m.Run(ctx)
	if err != nil {
		return withCode(migrationCode(ctx, err), fmt.Errorf("%s: %w", comp.Name, err))
	}
	return nil
}

// runWorker is the detached process `run` starts: it owns the component's
// log directory for as long as it runs, and records its pid there so that a
// second `run` on this host finds it instead of starting another.
func runWorker(c *cli.Context, comp *validate.Component) error {
	dir, err := runitlog.Open(comp.LogDir, runitlog.Options{})
	if err != nil {
		if errors.Is(err, runitlog.ErrLocked) {
			return withCode(exitInvalid, err)
		}
		return withCode(exitFailure, err)
	}
	defer dir.Close()
	pidFile := filepath.Join(comp.LogDir, pidFileName)
	// Written whole under a temporary name, so that a reader never sees a
	// partial pid.
	tmp := pidFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return withCode(exitFailure, fmt.Errorf("write pid file: %w", err))
	}
	if err := os.Rename(tmp, pidFile); err != nil {
		return withCode(exitFailure, fmt.Errorf("write pid file: %w", err))
	}
	defer os.Remove(pidFile)
	err = migrateComponent(c, comp, dir, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		// The migrator logged the failure through the platform format;
		// this line names the exit code for whoever reads the log later.
		newLog(dir).Errorf("deployhook worker exiting with code %d: %v", codeOf(err), err)
	}
	return err
}

// pidFileName is the worker's pid file inside the component's log directory.
const pidFileName = "deployhook.pid"

// checkCatchUpFlags refuses negative catch-up flags (exit 2).
func checkCatchUpFlags(c *cli.Context) error {
	if c.Int(catchUpThresholdFlag.Name) < 0 || c.Int(catchUpRoundsFlag.Name) < 0 {
		return exitf(exitUsage, "--%s and --%s must not be negative", catchUpThresholdFlag.Name, catchUpRoundsFlag.Name)
	}
	return nil
}

// The online migration's flags, on migrate and on run (which hands them to
// its worker).
var (
	offlineFlag = &cli.BoolFlag{Name: "offline",
		Usage: "no catch-up and no freeze of store2 (roles that may not create a trigger): stop the components first; a store2 that changed fails the migration"}
	catchUpThresholdFlag = &cli.IntFlag{Name: "catch-up-threshold", Value: 100,
		Usage: "freeze store2 once a catch-up round changes at most `N` records"}
	catchUpRoundsFlag = &cli.IntFlag{Name: "catch-up-rounds", Value: 10,
		Usage: "freeze store2 after at most `N` catch-up rounds"}
)
