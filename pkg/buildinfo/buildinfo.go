// Package buildinfo says which leakwatch this is. Version is set at link
// time (-X); otherwise the module version or VCS revision Go recorded is used.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is overridden with -ldflags "-X github.com/leakwatch/leakwatch/pkg/buildinfo.Version=v1.2.3".
var Version = ""

// Info describes this build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// Get returns this build's description.
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Revision = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}
