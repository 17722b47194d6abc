package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/migrate/pgsource"
	"github.com/apcera/deployhook/validate"
)

// checkTimeout bounds each data-loss check, so that `run` never holds up a
// deploy for longer than that when a store does not answer.
const checkTimeout = 2 * time.Second

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "deploy hook: check the settings and start the component's migration in the background",
		ArgsUsage: " ",
		Description: `What the Chef recipe runs on every central host. It validates the component
conf, refuses settings that would silently lose data, and when the component
is set to migrate and store3 has no done marker, starts "deployhook migrate"
detached (own session, logging to the component's log_dir) and returns.
Configuration errors no retry fixes (unreadable token, CA, certificate or
key files, an address that does not parse, a certificate refused in the TLS
handshake) are reported here, before a worker starts; a store that does
not answer is left to the worker, which retries.
Exit codes: 0 started or nothing to do, 2 usage, 3 invalid or refused.`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag, kindFlag, migrateFlag, hostnameFlag, noColorFlag,
			&cli.BoolFlag{Name: "accept-empty-store3", Usage: "start components on store3 without migrating although store2 holds records"},
			&cli.BoolFlag{Name: "accept-store2-revert", Usage: "go back to store2 although store3 was migrated (changes made in store3 since are lost); unfreezes store2"},
			offlineFlag, catchUpThresholdFlag, catchUpRoundsFlag,
		},
		Action: runRun,
	}
}

func runRun(c *cli.Context) error {
	if err := checkCatchUpFlags(c); err != nil {
		return err
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	log := newLog(c.App.ErrWriter)
	var firstErr error
	for _, comp := range comps {
		if err := runComponent(c, log, comp); err != nil {
			log.Errorf("%s: %v", comp.Name, err)
			if firstErr == nil {
				firstErr = silent(codeOf(err))
			}
		}
	}
	return firstErr
}

// runComponent applies the setting rules of DESIGN.md "Settings that lose
// data" to one component and starts its migration when one is due.
func runComponent(c *cli.Context, log *logrus.Entry, comp *validate.Component) error {
	ctx := c.Context
	doneKey := migrate.DoneKey(comp.Consul.Prefix)
	switch {
	case comp.Kind == migrate.KindStore2:
		done, err := doneExists(ctx, comp)
		switch {
		case err != nil:
			log.Warnf("%s: skipped the store2-revert check: %v", comp.Name, err)
		case done && !c.Bool("accept-store2-revert"):
			return exitf(exitInvalid, "refusing kind = store2: store3 was already migrated (key %q exists), so every change written to store3 since would be lost; "+
				"set db.kind = store3, or pass --accept-store2-revert if losing those changes is intended", doneKey)
		case done:
			log.Warnf("%s: going back to store2 although store3 was migrated (--accept-store2-revert): changes made in store3 since are not in store2", comp.Name)
			unfreezeStore2(ctx, log, comp, true, comp.Name+" goes back to store2")
		default:
			unfreezeStore2(ctx, log, comp, false, "an earlier migration froze it and ended without .done, and "+comp.Name+" uses store2")
		}
		log.Infof("%s uses store2: nothing to migrate", comp.Name)
		return nil

	case !comp.Migrate:
		done, err := doneExists(ctx, comp)
		if err == nil && done {
			log.Infof("%s uses store3, migrated earlier (key %q exists): nothing to do", comp.Name, doneKey)
			return nil
		}
		if err != nil {
			log.Warnf("%s: skipped the empty-store3 check: %v", comp.Name, err)
			return nil
		}
		has, err := store2HasRecords(ctx, comp)
		if err == nil {
			unfreezeStore2(ctx, log, comp, false, "an earlier migration froze it and ended without .done")
		}
		switch {
		case errors.Is(err, migrate.ErrNeverUsed):
			// Nothing in store2 to lose.
		case err != nil:
			log.Warnf("%s: skipped the empty-store3 check: %v", comp.Name, err)
		case has && !c.Bool("accept-empty-store3"):
			return exitf(exitInvalid, "refusing kind = store3 without migrating: store2 holds %s records and store3 has no %q, so components would start on an empty store3; "+
				"set db.migrate_store2_to_store3 = true, or pass --accept-empty-store3 if starting empty is intended", comp.Name, doneKey)
		case has:
			log.Warnf("%s: starting on an empty store3 although store2 holds records (--accept-empty-store3)", comp.Name)
		}
		log.Infof("%s uses store3 without migration: nothing to migrate", comp.Name)
		return nil
	}

	// A worker started on a configuration that can never work would only
	// die in the background: refuse it here, where the deploy sees it.
	if err := checkStores(ctx, comp); err != nil {
		return err
	}
	done, err := doneExists(ctx, comp)
	if err == nil && done {
		log.Infof("Migration has already been performed (key %q exists)", doneKey)
		return nil
	}
	if err != nil {
		// The worker retries store3 itself; a slow Consul must not make
		// the deploy skip the migration.
		log.Warnf("%s: %v; starting the migration anyway, it retries", comp.Name, err)
	}
	// Migration must never run on a cluster that never used store2: say so
	// here, where the deploy sees it, rather than only in the worker's log.
	_, err2 := store2HasRecords(ctx, comp)
	switch {
	case errors.Is(err2, migrate.ErrNeverUsed):
		return exitf(exitInvalid, "refusing to migrate: %v; set db.migrate_store2_to_store3 = false", err2)
	case migrate.CertificateError(err2):
		return exitf(exitInvalid, "%s: store2: %v: check sslrootcert, sslcert, sslkey and sslmode of db.postgres.url (or PGSSL*)", comp.File, err2)
	}
	if err == nil && err2 == nil {
		unfreezeStore2(ctx, log, comp, false, "an earlier migration froze it and ended without .done")
	}
	// Online, a role that may not freeze store2 would fail in the worker,
	// before it could record why: say so here, where the deploy sees it.
	if err2 == nil && !c.Bool(offlineFlag.Name) {
		if missing := store2FreezeGrant(ctx, comp); missing != "" {
			return exitf(exitInvalid, "refusing to migrate online: %s; or stop the components and set the cookbook attribute online false (--offline)", missing)
		}
	}
	pid, started, err := startWorker(c, comp)
	if err != nil {
		return err
	}
	if !started {
		log.Infof("%s: migration already running on this host (pid %d), log: %s", comp.Name, pid, filepath.Join(comp.LogDir, "current"))
		return nil
	}
	log.Infof("%s: started the store2 -> store3 migration in the background (pid %d), log: %s", comp.Name, pid, filepath.Join(comp.LogDir, "current"))
	return nil
}

// doneExists reads the done key, bounded by checkTimeout.
func doneExists(ctx context.Context, comp *validate.Component) (bool, error) {
	kv, err := newKV(comp)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	p, err := kv.Get(ctx, migrate.DoneKey(comp.Consul.Prefix))
	if err != nil {
		return false, fmt.Errorf("store3 did not answer within %v: %w", checkTimeout, err)
	}
	return p != nil, nil
}

// store2HasRecords asks store2 whether it holds any record, bounded by
// checkTimeout. A store2 that was never used holds none, and says so with an
// error wrapping migrate.ErrNeverUsed.
func store2HasRecords(ctx context.Context, comp *validate.Component) (bool, error) {
	if err := store2Configured(comp); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	src, err := pgsource.New(ctx, pgsource.Config{URL: comp.Postgres.URL, Database: comp.Database, Table: comp.Postgres.Table})
	if err != nil {
		return false, err
	}
	defer src.Close()
	has, err := src.HasRecords(ctx)
	if errors.Is(err, migrate.ErrNeverUsed) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("store2 did not answer within %v: %w", checkTimeout, err)
	}
	return has, nil
}

// store2Configured says why store2 is not configured, if it is not.
func store2Configured(comp *validate.Component) error {
	if comp.Postgres.URL == "" && os.Getenv("PGHOST") == "" && os.Getenv("PGSERVICE") == "" {
		return errors.New("store2 is not configured (no db.postgres.url, PGHOST or PGSERVICE)")
	}
	return nil
}

// unfreezeStore2 drops a freeze of store2 that no migration can complete
// behind: one an earlier migration left when it was killed during its
// cutover (and, with acceptRevert, the freeze behind .done). It leaves a
// running migration's freeze alone, and never holds up the deploy: it is
// bounded, and its failures are warnings (the next migration unfreezes
// too).
func unfreezeStore2(ctx context.Context, log *logrus.Entry, comp *validate.Component, acceptRevert bool, why string) {
	if store2Configured(comp) != nil {
		return
	}
	// A read of the catalog and, when store2 is frozen, one attempt to lock
	// the table past its writers (pgsource.DefaultFreezeLockTimeout).
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	src, kv, err := stores(ctx, comp)
	if err != nil {
		log.Warnf("%s: skipped the check for a freeze of store2: %v", comp.Name, err)
		return
	}
	defer src.Close()
	_, err = migrate.Unfreeze(ctx, src, kv, comp.Consul.Prefix, acceptRevert, why, log)
	switch {
	case errors.Is(err, migrate.ErrFreezeInUse), errors.Is(err, migrate.ErrMigrated):
		log.Infof("%s: store2 stays frozen: %v", comp.Name, err)
	case errors.Is(err, migrate.ErrNeverUsed):
	case err != nil:
		log.Warnf("%s: skipped the check for a freeze of store2: %v", comp.Name, err)
	}
}

// store2FreezeGrant returns what the store2 role lacks to freeze the table
// for the cutover, "" when it may or when store2 does not say within
// checkTimeout (the worker checks again).
func store2FreezeGrant(ctx context.Context, comp *validate.Component) string {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	src, err := pgsource.New(ctx, pgsource.Config{URL: comp.Postgres.URL, Database: comp.Database, Table: comp.Postgres.Table})
	if err != nil {
		return ""
	}
	defer src.Close()
	missing, err := src.CanFreeze(ctx)
	if err != nil {
		return ""
	}
	return missing
}
