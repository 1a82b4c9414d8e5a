package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/wasmstream/wasmstream/abi"
)

// version is the release version; builds from a checkout report "devel".
var version = "devel"

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("wasmstream %s%s (ABI v%d, %s %s/%s)", version, rev, abi.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
