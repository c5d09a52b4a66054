// Package containers tells who a cgroup belongs to from its path alone: the
// container runtime and container id, the Kubernetes pod and QoS class, or
// the systemd unit.
//
// leakwatch keys everything by memory cgroup, and a path is all it is sure to
// have for one: a CRI socket may be absent (plain hosts, docker, podman) or
// late, and a container that was just OOM-killed is gone from it. Runtimes
// and kubelet name cgroups by stable conventions, which Parse decodes for the
// systemd and cgroupfs drivers on cgroup v1, v2 and hybrid hosts alike (the
// path is relative to the memory hierarchy root, which makes the three look
// the same). Parse is pure: no I/O, no failure.
package containers

import "strings"

// Kinds of cgroup.
const (
	KindContainer = "container"
	// KindConmon is the cgroup of a container's monitor process (CRI-O's
	// and podman's conmon), which sits beside the container's own cgroup.
	KindConmon  = "conmon"
	KindPod     = "pod"
	KindService = "service"
	KindCgroup  = "cgroup"
)

// Runtimes.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
	RuntimeSystemd    = "systemd"
)

// QoS classes of Kubernetes pods.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// shortIDLen is the length docker and crictl use for short container ids.
const shortIDLen = 12

// Identity is what a cgroup path says about its owner. Fields the path does
// not tell are empty.
type Identity struct {
	// Runtime that created the container ("containerd", "cri-o", "docker",
	// "podman"), "systemd" for other systemd units, or "" when unknown. The
	// cgroupfs driver names container cgroups by bare id, so Kubernetes
	// containers under it have Runtime "" (the CRI socket can tell).
	Runtime string
	// ContainerID is the 64-hex-digit id of the container, also for conmon.
	ContainerID string
	// PodUID is the Kubernetes pod UID, dashed as the API shows it.
	PodUID string
	// QoSClass is "guaranteed", "burstable" or "besteffort" for cgroups
	// inside a Kubernetes QoS tree.
	QoSClass string
	// Kind is one of the Kind constants.
	Kind string
	// Name is short and human: the short container id, "pod<uid>", the
	// systemd unit, or else the last path element ("/" for the root).
	Name string
}

// Parse returns the identity of the cgroup at path, relative to the
// hierarchy root (for example "/kubepods.slice/kubepods-burstable.slice/
// kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope").
//
// The path is read from the root down and the deepest container wins, so
// cgroups a runtime nests under a container (".../<id>.scope/container")
// resolve to that container, and so do kubelets running inside a container
// (kind: "/docker/<node>/kubepods/...") resolve to the inner pods.
func Parse(path string) Identity {
	elems := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	var (
		id       Identity
		inKube   bool // below a kubepods cgroup
		prev     string
		lastUnit string
	)
	for _, e := range elems {
		switch {
		case isKubepods(e):
			// A new Kubernetes tree: whatever was found above it (the
			// node container of kind, say) is not the owner.
			id, inKube, lastUnit = Identity{}, true, ""
		case inKube && id.PodUID == "" && qosOf(e, prev) != "":
			id.QoSClass = qosOf(e, prev)
		case inKube && podUID(e) != "":
			uid, qos := podUID(e), podQoS(e, prev)
			if qos == "" {
				qos = id.QoSClass
			}
			id = Identity{PodUID: uid, QoSClass: qos}
		default:
			if rt, kind, cid, ok := parseContainer(e, prev); ok {
				id.Runtime, id.Kind, id.ContainerID = rt, kind, cid
			}
		}
		if id.ContainerID == "" && isSystemdUnit(e) {
			lastUnit = e
		}
		prev = e
	}

	switch {
	case id.ContainerID != "":
		id.Name = id.ContainerID[:shortIDLen]
	case id.PodUID != "":
		id.Kind, id.Name = KindPod, "pod"+id.PodUID
	case lastUnit != "":
		id.Kind, id.Name = KindCgroup, lastUnit
		if strings.HasSuffix(lastUnit, ".service") {
			id.Kind = KindService
		}
		if !inKube {
			id.Runtime = RuntimeSystemd
		}
	default:
		id.Kind, id.Name = KindCgroup, "/"
		if len(elems) > 0 {
			id.Name = elems[len(elems)-1]
		}
	}
	return id
}

// parseContainer recognises "<prefix>-<id>" with an optional ".scope"
// (systemd driver, CRI-O's cgroupfs driver, podman) and a bare id (cgroupfs
// driver), whose runtime only the parent can tell: "docker" for docker.
func parseContainer(e, parent string) (runtime, kind, id string, ok bool) {
	if isContainerID(e) {
		if parent == "docker" {
			return RuntimeDocker, KindContainer, e, true
		}
		return "", KindContainer, e, true
	}
	name := strings.TrimSuffix(e, ".scope")
	i := strings.LastIndexByte(name, '-')
	if i < 0 || !isContainerID(name[i+1:]) {
		return "", "", "", false
	}
	runtime, kind = runtimeOf(name[:i])
	if runtime == "" {
		return "", "", "", false
	}
	return runtime, kind, name[i+1:], true
}

// runtimeOf maps the prefix of "<prefix>-<64 hex>[.scope]" cgroup names to
// runtime and kind, or returns "" for prefixes of no known runtime.
func runtimeOf(prefix string) (runtime, kind string) {
	switch prefix {
	case "cri-containerd", "nerdctl":
		return RuntimeContainerd, KindContainer
	case "crio":
		return RuntimeCRIO, KindContainer
	case "crio-conmon":
		return RuntimeCRIO, KindConmon
	case "docker":
		return RuntimeDocker, KindContainer
	case "libpod":
		return RuntimePodman, KindContainer
	case "libpod-conmon":
		return RuntimePodman, KindConmon
	}
	return "", ""
}

// isKubepods recognises the root of kubelet's tree: "kubepods" (cgroupfs),
// "kubepods.slice", or with a --cgroup-root such as
// "kubelet-kubepods.slice".
func isKubepods(e string) bool {
	return e == "kubepods" || e == "kubepods.slice" || strings.HasSuffix(e, "-kubepods.slice")
}

// qosOf recognises a QoS cgroup: "burstable" under "kubepods" (cgroupfs) or
// "[...-]kubepods-burstable.slice" (systemd).
func qosOf(e, parent string) string {
	if parent == "kubepods" {
		if e == QoSBurstable || e == QoSBestEffort {
			return e
		}
		return ""
	}
	for _, q := range []string{QoSBurstable, QoSBestEffort} {
		if strings.HasSuffix(e, "kubepods-"+q+".slice") {
			return q
		}
	}
	return ""
}

// podUID returns the UID of a pod cgroup: "pod<uid>" (cgroupfs) or
// "[...-]kubepods[-<qos>]-pod<uid_with_underscores>.slice" (systemd, which
// reserves "-" for nesting).
func podUID(e string) string {
	var uid string
	switch {
	case strings.HasPrefix(e, "pod"):
		uid = e[len("pod"):]
	case strings.HasSuffix(e, ".slice") && strings.Contains(e, "kubepods"):
		name := strings.TrimSuffix(e, ".slice")
		i := strings.LastIndex(name, "-pod")
		if i < 0 {
			return ""
		}
		uid = strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
	default:
		return ""
	}
	if !isPodUID(uid) {
		return ""
	}
	return uid
}

// podQoS returns the QoS class of a pod cgroup: from the systemd slice name,
// or from the parent, where a pod right under kubepods is guaranteed.
func podQoS(e, parent string) string {
	if strings.HasSuffix(e, ".slice") {
		name := strings.TrimSuffix(e, ".slice")
		for _, q := range []string{QoSBurstable, QoSBestEffort} {
			if strings.Contains(name, "kubepods-"+q+"-pod") {
				return q
			}
		}
		if strings.Contains(name, "kubepods-pod") {
			return QoSGuaranteed
		}
		return ""
	}
	if isKubepods(parent) {
		return QoSGuaranteed
	}
	return qosOf(parent, "kubepods")
}

// isPodUID accepts UIDs as the API server makes them (36-character UUIDs)
// and as kubelet makes them for static pods (32 hex digits, an MD5).
func isPodUID(s string) bool {
	switch len(s) {
	case 32:
		return isLowerHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isLowerHexByte(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func isContainerID(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

// isSystemdUnit recognises the names of the unit types that own cgroups.
func isSystemdUnit(e string) bool {
	i := strings.LastIndexByte(e, '.')
	if i <= 0 {
		return false
	}
	switch e[i:] {
	case ".service", ".scope", ".slice", ".socket", ".mount", ".swap":
		return true
	}
	return false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}
