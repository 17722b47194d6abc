package main

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/consul/api"
	_ "github.com/hashicorp/hcl/v2"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/term"
	_ "golang.org/x/sys/unix"
)

func main() {}
