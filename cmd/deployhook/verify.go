package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/apcera/deployhook/migrate"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "compare store2 and store3 record by record",
		ArgsUsage: " ",
		Description: `Reports records missing from store3, extra in store3, and records whose
version or bytes differ, by their store2 bucket and key.
With --format json, one object per component per line.
Exit codes: 0 identical, 1 a store unreachable, 2 usage, 3 invalid conf
or never-used store2, 5 differences found.`,
		Before: requireConf,
		Flags: []cli.Flag{
			confFlag,
			&cli.IntFlag{Name: "max", Value: 100, Usage: "list at most `N` differences of each kind (missing, extra, different); 0 lists all"},
			formatFlag("the comparison"), noColorFlag,
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	comps, err := loadComponents(c)
	if err != nil {
		return err
	}
	worst := exitOK
	for _, comp := range comps {
		if err := checkStores(c.Context, comp); err != nil {
			return err
		}
		src, kv, err := stores(c.Context, comp)
		if err != nil {
			return err
		}
		diff, err := migrate.Verify(c.Context, src, kv, comp.Consul.Prefix, c.Int("max"))
		src.Close()
		if err != nil {
			return withCode(migrationCode(c.Context, err), fmt.Errorf("%s: verify: %w", comp.Name, err))
		}
		if err := writeDiff(c.App.Writer, format, comp.Name, diff, c.Int("max")); err != nil {
			return err
		}
		if !diff.Equal() {
			worst = exitFailed
		}
	}
	return silent(worst)
}
