package symbolize

import "strings"

// CodeMapping is an executable mapping of a captured process, and where
// its file can be read.
type CodeMapping struct {
	Start, Limit, Offset uint64
	// Root+Path opens the file that was verified at capture, while the
	// process lives: Root is the process's root ("/proc/PID/root") and
	// Path the file in it, or Root is "" and Path a /proc/PID/map_files
	// entry. For pseudo mappings Path is their name ("[vdso]"); "" when the
	// file was not found.
	Root, Path string
	// Key identifies the file's content (its build id, else its identity),
	// or "" with Path.
	Key string
}

// CodeMappings returns the executable mappings of a process, sorted by
// start, capturing it first if it was not. With refresh, its maps are read
// again (a library loaded since the capture).
func (s *Symbolizer) CodeMappings(pid uint32, startTime uint64, refresh bool) ([]CodeMapping, error) {
	key := procKey{pid, startTime}
	var (
		p   *process
		err error
	)
	if refresh {
		p, err = s.capture(key)
	} else {
		p, err = s.process(key)
	}
	if err != nil {
		return nil, err
	}
	root := s.procPath(pid, "root")
	out := make([]CodeMapping, 0, len(p.mappings))
	for _, pm := range p.mappings {
		m := CodeMapping{Start: pm.Start, Limit: pm.Limit, Offset: pm.Offset, Path: pm.openPath, Key: pm.contentKey}
		if path, ok := strings.CutPrefix(pm.openPath, root); ok && strings.HasPrefix(path, "/") {
			m.Root, m.Path = root, path
		}
		if pm.openPath == "" && strings.HasPrefix(pm.File, "[") {
			m.Path = pm.File
		}
		out = append(out, m)
	}
	return out, nil
}
