// Package lookup resolves what a user types to name a container — its API
// id, container id, name or cgroup path — to one container. The CLI and the
// HTTP API share it, so that every form one accepts the other accepts too.
package lookup

import (
	"errors"
	"fmt"
	"strings"
)

// Names are the ways a container can be named.
type Names struct {
	ID          string // the API id (memory cgroup id)
	Cgroup      string // path in the memory hierarchy
	ContainerID string
	Namespace   string
	Pod         string
	Container   string
	Gone        bool
}

// Name is how a container is shown: namespace/pod/container in
// Kubernetes, else its cgroup path.
func (n Names) Name() string {
	if n.Pod != "" {
		return n.Namespace + "/" + n.Pod + "/" + n.Container
	}
	return n.Cgroup
}

// Forms says what Find accepts, for messages that tell a user what to give.
const Forms = "an id, a container id (or 6+ leading characters), a name (container, pod or namespace/pod/container) or a cgroup path"

// MinPrefix is the shortest container-id prefix accepted: shorter ones
// match too much by chance.
const MinPrefix = 6

var (
	// ErrNotFound: nothing matches.
	ErrNotFound = errors.New("no container matches")
	// ErrAmbiguous: several live containers match.
	ErrAmbiguous = errors.New("several containers match")
)

// Find returns the index in list of the container q names. An id or a
// cgroup path names one exactly; otherwise q may be a container-id prefix
// or a name, and when a restart left a gone twin under the same name, the
// live one is meant.
func Find[T any](list []T, q string, names func(T) Names) (int, error) {
	var matches []int
	for i := range list {
		n := names(list[i])
		if n.ID == q || n.Cgroup == q {
			return i, nil
		}
		if (len(q) >= MinPrefix && strings.HasPrefix(n.ContainerID, q)) || n.Container == q || n.Pod == q || n.Name() == q {
			matches = append(matches, i)
		}
	}
	switch len(matches) {
	case 0:
		return -1, fmt.Errorf("%w %s; give %s", ErrNotFound, Quote(q), Forms)
	case 1:
		return matches[0], nil
	}
	var live []int
	for _, i := range matches {
		if !names(list[i]).Gone {
			live = append(live, i)
		}
	}
	if len(live) == 1 {
		return live[0], nil
	}
	ids := make([]string, 0, len(matches))
	for _, i := range matches {
		n := names(list[i])
		ids = append(ids, n.ID+" ("+n.Name()+")")
	}
	return -1, fmt.Errorf("%w %s: %s; give an id", ErrAmbiguous, Quote(q), strings.Join(ids, ", "))
}

// maxQuoted is how much of what a user typed a message repeats: enough to
// recognise it, while a 60 KB id sent to the API does not come back whole.
const maxQuoted = 80

// Quote quotes q for a message, cut to its first maxQuoted bytes.
func Quote(q string) string {
	if len(q) <= maxQuoted {
		return fmt.Sprintf("%q", q)
	}
	return fmt.Sprintf("%q... (%d bytes)", strings.ToValidUTF8(q[:maxQuoted], ""), len(q))
}
