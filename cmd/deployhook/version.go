package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version, when set at link time (-ldflags "-X main.version=v1.2.3"), names
// the release instead of the module version the build info holds.
var version string

// toolVersion is what --version prints and .done records as tool_version:
// the module version, the VCS revision and whether the tree was dirty, and
// the Go version, all from the binary's build info. Two builds of different
// commits never share it.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return versionString(version, "", false, "")
	}
	v := version
	if v == "" {
		v = bi.Main.Version
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	return versionString(v, rev, dirty, bi.GoVersion)
}

// versionString formats the parts: "v1.2.3 (rev 0123456789ab, dirty, go1.26.8)".
func versionString(mod, rev string, dirty bool, goVersion string) string {
	if mod == "" {
		mod = "(devel)"
	}
	var parts []string
	if rev != "" {
		parts = append(parts, "rev "+rev[:min(len(rev), 12)])
	}
	if dirty {
		parts = append(parts, "dirty")
	}
	if goVersion != "" {
		parts = append(parts, goVersion)
	}
	if len(parts) == 0 {
		return mod
	}
	return fmt.Sprintf("%s (%s)", mod, strings.Join(parts, ", "))
}
