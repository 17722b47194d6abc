package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate"
)

const dryRunFlagName = "dry_run_store_migration"

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "migrate one component from store2 to store3 in the foreground (or dry-run it)",
		ArgsUsage: " ",
		Description: `Takes the component's Consul lock, copies every store2 record into store3
with fenced transactions, catches up with what the running components wrote
meanwhile, freezes store2 for writes, verifies the copy against the frozen
store2 and writes the done marker (--offline: no catch-up and no freeze; the
components must be stopped). With -dry_run_store_migration it checks all
that without writing anything, and --format json prints its report as one
JSON object.
Exit codes: 0 done or already done, 1 unexpected failure, 2 usage,
3 invalid or refused, 4 lock timeout, 5 migration failed, 6 interrupted.`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag, kindFlag, migrateFlag, hostnameFlag,
			&cli.BoolFlag{Name: dryRunFlagName, Usage: "check everything a migration needs without writing anything"},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "give up (exit 4) when the lock is not acquired within `D`; 0 waits for ever"},
			&cli.DurationFlag{Name: "retry-for", Value: 2 * time.Minute, Usage: "keep retrying an unreachable PostgreSQL or Consul for `D` before giving up (exit 1)"},
			offlineFlag, catchUpThresholdFlag, catchUpRoundsFlag,
			&cli.BoolFlag{Name: "accept-store2-revert", Usage: "when the migration is done, unfreeze store2 anyway (components back on store2 lose what store3 got since)"},
			formatFlag("the dry run's report"),
			noColorFlag,
			workerFlag,
		},
		Action: runMigrate,
	}
}

func runMigrate(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	if format == formatJSON && !c.Bool(dryRunFlagName) {
		return usagef(c, "--format json is for the dry run's report: add -%s", dryRunFlagName)
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	if len(comps) != 1 {
		return usagef(c, "takes exactly one -f component conf, got %d", len(comps))
	}
	comp := comps[0]
	if !migrate.Migrates(comp.Kind, comp.Migrate) {
		return exitf(exitInvalid, "%s: %s is on %s with migrate_store2_to_store3 = %t: nothing to migrate; set db.kind = store3 and db.migrate_store2_to_store3 = true (or pass -db.kind store3 -db.migrate_store2_to_store3)",
			comp.File, comp.Name, comp.Kind, comp.Migrate)
	}
	if c.Bool(workerFlag.Name) {
		return runWorker(c, comp)
	}
	if err := checkStores(c.Context, comp); err != nil {
		return err
	}
	out := c.App.ErrWriter
	var bar *progress
	if ansiTerminal(out) && !c.Bool(dryRunFlagName) {
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
	tuneGC()
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
		ToolVersion: toolVersion(),
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
	if c.Bool(dryRunFlagName) {
		rep, err := m.DryRun(ctx)
		if rep != nil {
			if werr := writeDryRun(c, comp, rep, err); werr != nil {
				return werr
			}
		}
		return withCode(migrationCode(ctx, err), err)
	}
	_, err = m.Run(ctx)
	if err != nil {
		return withCode(migrationCode(ctx, err), fmt.Errorf("%s: %w", comp.Name, err))
	}
	return nil
}

// onlineArgs hands run's online-migration flags to its worker.
func onlineArgs(c *cli.Context) []string {
	var args []string
	if c.Bool(offlineFlag.Name) {
		args = append(args, "--"+offlineFlag.Name)
	}
	for _, f := range []*cli.IntFlag{catchUpThresholdFlag, catchUpRoundsFlag} {
		if c.IsSet(f.Name) {
			args = append(args, "--"+f.Name, strconv.Itoa(c.Int(f.Name)))
		}
	}
	return args
}

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
