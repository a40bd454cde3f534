package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAdminTenantCreateAndLs(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("", "admin", "tenant", "create", "team-ml", "--max-sandboxes", "50")
	if code != 0 || !strings.Contains(out, "created tenant tn-") || !strings.Contains(out, "max sandboxes: 50") ||
		!strings.Contains(out, "\n    sbx_fake_") || !strings.Contains(errOut, "cannot show it again") {
		t.Fatalf("tenant create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var created struct {
		Tenant tenantJSON `json:"tenant"`
		Key    keyJSON    `json:"key"`
	}
	code, out, errOut = c.run("", "admin", "tenant", "create", "ci", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &created) != nil || created.Tenant.Name != "ci" ||
		!strings.HasPrefix(created.Key.APIKey, "sbx_fake_") || created.Key.TenantID != created.Tenant.ID || !strings.Contains(errOut, "Store this API key") {
		t.Fatalf("tenant create --json: exit %d, %+v, stdout %q, stderr %q", code, created, out, errOut)
	}

	out = c.must("admin", "tenant", "ls")
	if !strings.Contains(out, "MAX SANDBOXES") || !strings.Contains(out, "team-ml") || !strings.Contains(out, "ci") || strings.Contains(out, "sbx_") {
		t.Fatalf("tenant ls:\n%s", out)
	}
	var list []tenantJSON
	if err := json.Unmarshal([]byte(c.must("admin", "tenant", "ls", "--json")), &list); err != nil || len(list) != 3 {
		t.Fatalf("tenant ls --json: %v %v", list, err)
	}
	if out := c.must("admin", "tenant", "update", created.Tenant.ID, "--max-sandboxes", "7"); !strings.Contains(out, "max sandboxes: 7") {
		t.Fatalf("tenant update: %q", out)
	}

	for _, args := range [][]string{
		{"admin", "tenant", "create"},
		{"admin", "tenant", "create", "x", "--max-sandboxes", "-1"},
		{"admin", "tenant", "update", "local"},
		{"admin", "key", "create"},
		{"admin", "key", "revoke"},
	} {
		if code, _, errOut := c.run("", args...); code != 2 {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", args, code, errOut)
		}
	}
	code, _, errOut = c.run("", "admin", "tenant", "create", "denied")
	if code != 1 || !strings.Contains(errOut, "ADMIN_REQUIRED") && !strings.Contains(errOut, "--admin") {
		t.Fatalf("non-admin create: exit %d, stderr %q", code, errOut)
	}
}

func TestAdminKeyCreateLsRevoke(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("", "admin", "key", "create", "local", "--label", "ci runner")
	if code != 0 || !strings.Contains(out, "of tenant local") || !strings.Contains(out, "sbx_fake_") || !strings.Contains(errOut, "Store this API key") {
		t.Fatalf("key create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var k keyJSON
	if err := json.Unmarshal([]byte(c.must("admin", "key", "create", "local", "--json")), &k); err != nil || k.ID == "" || k.APIKey == "" {
		t.Fatalf("key create --json: %+v %v", k, err)
	}
	out = c.must("admin", "key", "ls", "local")
	if !strings.Contains(out, "ci runner") || !strings.Contains(out, k.ID) || strings.Contains(out, "sbx_fake") {
		t.Fatalf("key ls:\n%s", out)
	}
	var keys []keyJSON
	if err := json.Unmarshal([]byte(c.must("admin", "key", "ls", "--json")), &keys); err != nil || len(keys) != 3 {
		t.Fatalf("key ls --json: %v %v", keys, err)
	}
	for _, kj := range keys {
		if kj.APIKey != "" {
			t.Fatalf("key ls printed a secret: %+v", kj)
		}
	}
	if out := c.must("admin", "key", "revoke", k.ID); out != "revoked API key "+k.ID+"\n" {
		t.Fatalf("key revoke: %q", out)
	}
	if out := c.must("admin", "key", "ls"); strings.Contains(out, k.ID) {
		t.Fatalf("revoked key still listed:\n%s", out)
	}
	code, _, errOut = c.run("", "admin", "key", "revoke", k.ID)
	if code != 1 || !strings.Contains(errOut, "API_KEY_NOT_FOUND") && !strings.Contains(errOut, "not found") {
		t.Fatalf("second revoke: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = c.run("", "admin", "key", "ls", "tn-nope")
	if code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("keys of a missing tenant: exit %d, stderr %q", code, errOut)
	}
}
