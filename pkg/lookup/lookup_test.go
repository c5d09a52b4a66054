package lookup

import (
	"errors"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	list := []Names{
		{ID: "1", Cgroup: "/kubepods/a.scope", ContainerID: "abcdef0123", Namespace: "shop", Pod: "cart-0", Container: "cart"},
		{ID: "2", Cgroup: "/kubepods/b.scope", ContainerID: "abcdef9999", Namespace: "shop", Pod: "cart-1", Container: "cart", Gone: true},
		{ID: "3", Cgroup: "/kubepods/c.scope", ContainerID: "0123456789", Namespace: "shop", Pod: "web-0", Container: "web"},
		{ID: "4", Cgroup: "/kubepods/d.scope", ContainerID: "9876543210", Namespace: "shop", Pod: "web-1", Container: "web"},
		{ID: "5", Cgroup: "/system.slice/nginx.service", Container: "nginx.service"},
	}
	self := func(n Names) Names { return n }
	for _, tc := range []struct {
		q    string
		want string // ID, or "" with err
		err  error
	}{
		{"3", "3", nil},
		{"/system.slice/nginx.service", "5", nil},
		{"nginx.service", "5", nil},
		{"012345", "3", nil},         // container id prefix of 6
		{"01234", "", ErrNotFound},   // too short a prefix
		{"shop/web-1/web", "4", nil}, // full name
		{"web-0", "3", nil},          // pod
		{"cart", "1", nil},           // the live one of a restarted pair
		{"abcdef", "1", nil},         // prefix of both; the gone one is left
		{"web", "", ErrAmbiguous},    // two live ones
		{"/kubepods/none.scope", "", ErrNotFound},
	} {
		i, err := Find(list, tc.q, self)
		switch {
		case tc.err != nil:
			if !errors.Is(err, tc.err) {
				t.Errorf("Find(%q) = %d, %v; want %v", tc.q, i, err, tc.err)
			}
		case err != nil || list[i].ID != tc.want:
			t.Errorf("Find(%q) = %d, %v; want id %s", tc.q, i, err, tc.want)
		}
	}
}

// A miss repeats a long query only in part.
func TestNotFoundQuotesLongQueryShort(t *testing.T) {
	q := strings.Repeat("x", 60<<10)
	_, err := Find([]Names{{ID: "1"}}, q, func(n Names) Names { return n })
	if !errors.Is(err, ErrNotFound) || len(err.Error()) > 400 || !strings.Contains(err.Error(), "61440 bytes") {
		t.Errorf("error of %d bytes: %.300s", len(err.Error()), err)
	}
	if got := Quote("abc"); got != `"abc"` {
		t.Errorf("Quote(abc) = %s", got)
	}
}
