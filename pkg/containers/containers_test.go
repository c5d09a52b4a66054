package containers

import (
	"strings"
	"testing"
)

const (
	cid   = "4f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
	cid2  = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
	uid   = "3f9a2c4e-8b1d-4e6f-9a0b-c1d2e3f4a5b6"
	uidU  = "3f9a2c4e_8b1d_4e6f_9a0b_c1d2e3f4a5b6"
	short = "4f1c0d2e9a8b"
	// Static pods: kubelet uses an MD5 of the manifest as UID.
	staticUID = "5d8c1a9f0e3b7c2d4a6f8e0b1c3d5e7f"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Identity
	}{
		// Kubernetes, systemd driver (v2 and v1/hybrid paths look alike).
		{"systemd burstable containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Identity{Runtime: RuntimeContainerd, ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"systemd besteffort crio", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope",
			Identity{Runtime: RuntimeCRIO, ContainerID: cid, PodUID: uid, QoSClass: QoSBestEffort, Kind: KindContainer, Name: short}},
		{"systemd guaranteed docker", "/kubepods.slice/kubepods-pod" + uidU + ".slice/docker-" + cid + ".scope",
			Identity{Runtime: RuntimeDocker, ContainerID: cid, PodUID: uid, QoSClass: QoSGuaranteed, Kind: KindContainer, Name: short}},
		{"systemd crio conmon", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			Identity{Runtime: RuntimeCRIO, ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindConmon, Name: short}},
		{"systemd crio nested container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope/container",
			Identity{Runtime: RuntimeCRIO, ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"systemd static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + staticUID + ".slice/cri-containerd-" + cid + ".scope",
			Identity{Runtime: RuntimeContainerd, ContainerID: cid, PodUID: staticUID, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"systemd pod slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice",
			Identity{PodUID: uid, QoSClass: QoSBurstable, Kind: KindPod, Name: "pod" + uid}},
		{"systemd guaranteed pod slice", "/kubepods.slice/kubepods-pod" + uidU + ".slice",
			Identity{PodUID: uid, QoSClass: QoSGuaranteed, Kind: KindPod, Name: "pod" + uid}},
		{"systemd qos slice", "/kubepods.slice/kubepods-besteffort.slice",
			Identity{QoSClass: QoSBestEffort, Kind: KindCgroup, Name: "kubepods-besteffort.slice"}},
		{"systemd kubepods", "/kubepods.slice",
			Identity{Kind: KindCgroup, Name: "kubepods.slice"}},
		{"systemd custom cgroup root", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Identity{Runtime: RuntimeContainerd, ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},

		// Kubernetes, cgroupfs driver.
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: QoSGuaranteed, Kind: KindContainer, Name: short}},
		{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid2,
			Identity{ContainerID: cid2, PodUID: uid, QoSClass: QoSBestEffort, Kind: KindContainer, Name: cid2[:12]}},
		{"cgroupfs crio", "/kubepods/burstable/pod" + uid + "/crio-" + cid,
			Identity{Runtime: RuntimeCRIO, ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"cgroupfs pod", "/kubepods/besteffort/pod" + uid,
			Identity{PodUID: uid, QoSClass: QoSBestEffort, Kind: KindPod, Name: "pod" + uid}},
		{"cgroupfs qos", "/kubepods/burstable",
			Identity{QoSClass: QoSBurstable, Kind: KindCgroup, Name: "burstable"}},
		{"kind node on a v1 host", "/docker/" + cid2 + "/kubepods/burstable/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: QoSBurstable, Kind: KindContainer, Name: short}},
		{"kind node itself", "/docker/" + cid2 + "/kubepods/burstable",
			Identity{QoSClass: QoSBurstable, Kind: KindCgroup, Name: "burstable"}},

		// Docker and podman without Kubernetes.
		{"docker cgroupfs", "/docker/" + cid,
			Identity{Runtime: RuntimeDocker, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"docker systemd", "/system.slice/docker-" + cid + ".scope",
			Identity{Runtime: RuntimeDocker, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"docker in docker", "/docker/" + cid2 + "/docker/" + cid,
			Identity{Runtime: RuntimeDocker, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"systemd inside docker", "/system.slice/docker-" + cid + ".scope/system.slice/nginx.service",
			Identity{Runtime: RuntimeDocker, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"podman systemd", "/machine.slice/libpod-" + cid + ".scope",
			Identity{Runtime: RuntimePodman, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"podman nested container", "/machine.slice/libpod-" + cid + ".scope/container",
			Identity{Runtime: RuntimePodman, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"podman conmon", "/machine.slice/libpod-conmon-" + cid + ".scope",
			Identity{Runtime: RuntimePodman, ContainerID: cid, Kind: KindConmon, Name: short}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope",
			Identity{Runtime: RuntimePodman, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + cid,
			Identity{Runtime: RuntimePodman, ContainerID: cid, Kind: KindContainer, Name: short}},
		{"nerdctl", "/system.slice/nerdctl-" + cid + ".scope",
			Identity{Runtime: RuntimeContainerd, ContainerID: cid, Kind: KindContainer, Name: short}},

		// systemd units and plain cgroups.
		{"service", "/system.slice/nginx.service",
			Identity{Runtime: RuntimeSystemd, Kind: KindService, Name: "nginx.service"}},
		{"runtime daemon is a service", "/system.slice/containerd.service",
			Identity{Runtime: RuntimeSystemd, Kind: KindService, Name: "containerd.service"}},
		{"templated service", "/system.slice/system-getty.slice/getty@tty1.service",
			Identity{Runtime: RuntimeSystemd, Kind: KindService, Name: "getty@tty1.service"}},
		{"service sub-cgroup", "/system.slice/nginx.service/payload",
			Identity{Runtime: RuntimeSystemd, Kind: KindService, Name: "nginx.service"}},
		{"user session", "/user.slice/user-1000.slice/session-3.scope",
			Identity{Runtime: RuntimeSystemd, Kind: KindCgroup, Name: "session-3.scope"}},
		{"user service", "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
			Identity{Runtime: RuntimeSystemd, Kind: KindService, Name: "dbus.service"}},
		{"user slice", "/user.slice",
			Identity{Runtime: RuntimeSystemd, Kind: KindCgroup, Name: "user.slice"}},
		{"init scope", "/init.scope",
			Identity{Runtime: RuntimeSystemd, Kind: KindCgroup, Name: "init.scope"}},
		{"hand-made", "/process_api/cdf3c1f81e874c6448d1bec004a85f50",
			Identity{Kind: KindCgroup, Name: "cdf3c1f81e874c6448d1bec004a85f50"}},
		{"root", "/", Identity{Kind: KindCgroup, Name: "/"}},
		{"empty", "", Identity{Kind: KindCgroup, Name: "/"}},

		// Near misses stay plain cgroups.
		{"short id", "/docker/" + cid[:63], Identity{Kind: KindCgroup, Name: cid[:63]}},
		{"upper-case id", "/docker/" + strings.ToUpper(cid), Identity{Kind: KindCgroup, Name: strings.ToUpper(cid)}},
		{"unknown prefix", "/system.slice/foo-" + cid + ".scope",
			Identity{Runtime: RuntimeSystemd, Kind: KindCgroup, Name: "foo-" + cid + ".scope"}},
		{"pod outside kubepods", "/pod" + uid, Identity{Kind: KindCgroup, Name: "pod" + uid}},
		{"bad pod uid", "/kubepods/burstable/podnotauid",
			Identity{QoSClass: QoSBurstable, Kind: KindCgroup, Name: "podnotauid"}},
		{"dot only", "/.service", Identity{Kind: KindCgroup, Name: ".service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.path); got != tt.want {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.path, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
		"/kubepods/besteffort/pod" + uid + "/" + cid,
		"/system.slice/docker-" + cid + ".scope",
		"/machine.slice/libpod-conmon-" + cid + ".scope",
		"/system.slice/nginx.service",
		"/docker/" + cid2 + "/kubepods/pod" + uid + "/crio-" + cid,
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id := Parse(path)
		if again := Parse(path); again != id {
			t.Fatalf("Parse(%q) not deterministic: %+v then %+v", path, id, again)
		}
		if id.ContainerID != "" && !isContainerID(id.ContainerID) {
			t.Fatalf("Parse(%q): container id %q is not 64 lower-case hex digits", path, id.ContainerID)
		}
		if id.PodUID != "" && !isPodUID(id.PodUID) {
			t.Fatalf("Parse(%q): pod uid %q", path, id.PodUID)
		}
		switch id.Kind {
		case KindContainer, KindConmon:
			if id.ContainerID == "" {
				t.Fatalf("Parse(%q): kind %s without container id", path, id.Kind)
			}
		case KindPod:
			if id.PodUID == "" || id.ContainerID != "" {
				t.Fatalf("Parse(%q): pod %+v", path, id)
			}
		case KindService, KindCgroup:
			if id.ContainerID != "" {
				t.Fatalf("Parse(%q): kind %s with container id", path, id.Kind)
			}
		default:
			t.Fatalf("Parse(%q): unknown kind %q", path, id.Kind)
		}
		switch id.QoSClass {
		case "", QoSGuaranteed, QoSBurstable, QoSBestEffort:
		default:
			t.Fatalf("Parse(%q): QoS class %q", path, id.QoSClass)
		}
		if id.Name == "" {
			t.Fatalf("Parse(%q): empty name", path)
		}
	})
}
