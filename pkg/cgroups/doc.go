// Package cgroups finds the memory cgroup hierarchy of the host and reads the
// memory statistics of the cgroups in it.
//
// The kernel side of leakwatch keys every container by its memory cgroup id:
// the kernfs id of the cgroup that the task's memory css belongs to. User space
// has to turn that id back into a path and a set of numbers, so this package
// answers three questions for cgroup v1, v2 and hybrid hosts alike:
//
//   - where the memory controller lives ([Detect], [Open]);
//   - which cgroups exist and what their ids are ([Hierarchy.Scan],
//     [Hierarchy.Lookup]); the id of a cgroup is the inode number of its
//     directory, which on 64-bit kernels equals the kernfs id;
//   - how much memory a cgroup holds and how much of it a leak can hold
//     ([MemoryReader], [Hierarchy.ReadMemory], [MemoryStats.LeakSignal]).
//
// The agent reads every container's memory every interval, so that read is
// kept small: a [MemoryReader] opens only the files [MemoryStats] needs
// (five on v1, four on v2), each with one read into a buffer it reuses,
// parses them without allocating, and reads an ancestor's limit once per
// collection round instead of once per cgroup below it. With [OpenFiles]
// the files stay open from one round to the next and a round reads each with
// one pread: a v1 cgroup's five files cost 56-57 µs opened and closed and
// 16-17 µs held (BenchmarkMemoryReader, this project's 2-vCPU VM).
// [Hierarchy.Scan] reads each directory with getdents and takes the cgroup
// id from the listing: 159-179 µs for the host's 14 v1 cgroups, against
// 464-647 µs with filepath.WalkDir (BenchmarkScan, interleaved). It reads the files
// itself rather than through containerd's cgroups library
// (github.com/containerd/cgroups/v3): its Stat opens every file of the
// controller (18 on a v1 host with swap accounting, nine on v2) with
// os.Open, which registers each kernfs file with the poller, and parses them
// into maps and protobuf structs, about ten times the CPU for a handful of
// numbers; even its memory.events read alone costs three times ours. The
// library stays in the tests, as the independent reader that this one is
// checked against on every cgroup of the fixture trees.
//
// Cgroups come and go while the agent reads them. A cgroup removed under a
// reader is not a failure of the reader: such errors match [ErrGone] (and,
// where the kernel said ENOENT, [fs.ErrNotExist]) so callers can count them.
package cgroups
