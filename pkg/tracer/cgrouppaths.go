package tracer

import (
	"errors"

	"github.com/cilium/ebpf"
)

// CgroupPath names a memory cgroup made while the tracer ran, by its id,
// removed or not: its path relative to the hierarchy's root, as the kernel
// gave it at mkdir. A scan of the hierarchy cannot name a cgroup made and
// removed between two scans (a container killed at start-up); this can,
// for the last 1024 made. False when the cgroup is not among them, or its
// path was longer than the kernel side keeps (it would be cut).
func (t *Tracer) CgroupPath(memcg uint64) (string, bool) {
	if t == nil || t.objs.CgroupPaths == nil {
		return "", false
	}
	var v leakwatchCgroupPath
	if err := t.objs.CgroupPaths.Lookup(memcg, &v); err != nil {
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.log.Debug("reading a cgroup's path", "memcg", memcg, logKeyErr, err)
		}
		return "", false
	}
	path, ended := cString(v.Path[:])
	if path == "" || !ended {
		return "", false // it filled the buffer: cut
	}
	return path, true
}
