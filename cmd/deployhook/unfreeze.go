package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
)

func unfreezeCommand() *cli.Command {
	return &cli.Command{
		Name:      "unfreeze",
		Usage:     "drop the freeze of store2 that an online migration's cutover left",
		ArgsUsage: " ",
		Description: `An online migration freezes store2 for writes at its cutover (trigger
deployhook_store2_frozen) and unfreezes it when it fails; after .done the
freeze stays, store2 being retired. This drops the freeze by hand: a freeze
left without .done (a migration killed during its cutover), or, with
--accept-store2-revert, the freeze of a completed migration. It never drops
the freeze of a migration that holds the lock: that one unfreezes itself.
Exit codes: 0 unfrozen or not frozen, 1 a store unreachable, 2 usage,
3 refused (.done exists without --accept-store2-revert, or a migration in
progress owns the freeze).`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag,
			&cli.BoolFlag{Name: "accept-store2-revert", Usage: "unfreeze although the migration is done: components back on store2 lose what store3 got since"},
			noColorFlag,
		},
		Action: runUnfreeze,
	}
}

func runUnfreeze(c *cli.Context) error {
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	log := newLog(c.App.ErrWriter)
	worst := exitOK
	for _, comp := range comps {
		if err := checkStores(c.Context, comp); err != nil {
			return err
		}
		src, kv, err := stores(c.Context, comp)
		if err != nil {
			return err
		}
		dropped, err := migrate.Unfreeze(c.Context, src, kv, comp.Consul.Prefix, c.Bool("accept-store2-revert"), "deployhook unfreeze", log)
		src.Close()
		switch {
		case err != nil:
			code := migrationCode(c.Context, err)
			if errors.Is(err, migrate.ErrNeverUsed) {
				code = exitInvalid
			}
			log.Errorf("%s: %v", comp.Name, err)
			worst = max(worst, code)
		case dropped:
			fmt.Fprintf(c.App.Writer, "%s: store2 unfrozen\n", comp.Name)
		default:
			fmt.Fprintf(c.App.Writer, "%s: store2 is not frozen\n", comp.Name)
		}
	}
	return silent(worst)
}
