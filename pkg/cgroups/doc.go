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
//     ([Hierarchy.ReadMemory], [MemoryStats.LeakSignal]).
//
// Cgroups come and go while the agent reads them. A cgroup removed under a
// reader is not a failure of the reader: such errors match [ErrGone] (and,
// where the kernel said ENOENT, [fs.ErrNotExist]) so callers can count them.
package cgroups
