package daemon

import (
	"slices"
	"strings"
	"testing"
)

func TestAdminsAreImageAdmins(t *testing.T) {
	c := Default() // local mode
	c.Admins = []string{"tn-root"}
	c.ImageAdmins = []string{"tn-ops"}
	if got := c.admins(); !slices.Equal(got, []string{"tn-root", LocalTenant}) {
		t.Fatalf("admins %v", got)
	}
	if got := c.imageAdmins(); !slices.Equal(got, []string{"tn-ops", "tn-root", LocalTenant}) {
		t.Fatalf("image admins %v", got)
	}
	c.LocalMode = false
	if got := c.admins(); !slices.Equal(got, []string{"tn-root"}) {
		t.Fatalf("admins without local mode %v", got)
	}
	c.Admins = []string{"../x"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `admin "../x"`) {
		t.Fatalf("Validate with admin ../x: %v", err)
	}
}
