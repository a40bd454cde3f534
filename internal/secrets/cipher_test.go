package secrets

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func testCipher(t *testing.T, b byte) *Cipher {
	t.Helper()
	c, err := NewCipher(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpen(t *testing.T) {
	c := testCipher(t, 1)
	sealed, err := c.Seal("tenant-a", "HF_TOKEN", []byte("hf_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hf_secret")) {
		t.Fatal("sealed value holds the plaintext")
	}
	again, _ := c.Seal("tenant-a", "HF_TOKEN", []byte("hf_secret"))
	if bytes.Equal(sealed, again) {
		t.Error("two seals of one value are equal: the nonce must be random")
	}
	got, err := c.Open("tenant-a", "HF_TOKEN", sealed)
	if err != nil || string(got) != "hf_secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	empty, _ := c.Seal("t", "E", nil)
	if got, err := c.Open("t", "E", empty); err != nil || len(got) != 0 {
		t.Errorf("empty value: %q, %v", got, err)
	}

	// The sealed value is bound to its key, tenant and name: a row moved
	// to another tenant or name, or altered, does not open.
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		what   string
		c      *Cipher
		tenant string
		name   string
		sealed []byte
	}{
		{"another tenant", c, "tenant-b", "HF_TOKEN", sealed},
		{"another name", c, "tenant-a", "OTHER", sealed},
		{"shifted boundary", c, "tenant-aH", "F_TOKEN", sealed},
		{"another key", testCipher(t, 2), "tenant-a", "HF_TOKEN", sealed},
		{"altered byte", c, "tenant-a", "HF_TOKEN", flipped},
		{"truncated", c, "tenant-a", "HF_TOKEN", sealed[:10]},
		{"unknown version", c, "tenant-a", "HF_TOKEN", append([]byte{9}, sealed[1:]...)},
	} {
		_, err := tc.c.Open(tc.tenant, tc.name, tc.sealed)
		if !errors.Is(err, sandbox.ErrFailedPrecondition) || sandbox.ReasonOf(err) != sandbox.ReasonSecretUnreadable {
			t.Errorf("%s: %v, want FailedPrecondition %s", tc.what, err, sandbox.ReasonSecretUnreadable)
		}
	}
	if _, err := NewCipher([]byte("short")); !errors.Is(err, sandbox.ErrInvalidArgument) {
		t.Errorf("short key: %v", err)
	}
}

func TestValidateRefs(t *testing.T) {
	ok := []sandbox.SecretRef{{Name: "HF_TOKEN"}, {Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}, {Name: "_x1"}}
	if err := ValidateRefs("secrets", ok, map[string]string{"OTHER": "1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		refs []sandbox.SecretRef
		env  map[string]string
		want string
	}{
		{[]sandbox.SecretRef{{Name: ""}}, nil, "secrets[0].name is empty"},
		{[]sandbox.SecretRef{{Name: "9X"}}, nil, `secrets[0].name "9X" is invalid`},
		{[]sandbox.SecretRef{{Name: "A", EnvVar: "B C"}}, nil, `secrets[0].env_var "B C" is invalid`},
		{[]sandbox.SecretRef{{Name: "PATH"}}, nil, "injects PATH, which sbx reserves"},
		{[]sandbox.SecretRef{{Name: "A", EnvVar: "LD_PRELOAD"}}, nil, "reserves"},
		{[]sandbox.SecretRef{{Name: "A", EnvVar: "SBX_KEY"}}, nil, "reserves"},
		{[]sandbox.SecretRef{{Name: "A"}, {Name: "B", EnvVar: "A"}}, nil, "secrets[1].env_var and secrets[0] both inject A"},
		{[]sandbox.SecretRef{{Name: "A"}}, map[string]string{"A": "1"}, "which env sets too"},
		{make([]sandbox.SecretRef, MaxPerSandbox+1), nil, "at most 100"},
		{[]sandbox.SecretRef{{Name: strings.Repeat("N", MaxNameLen+1)}}, nil, "at most 128"},
	} {
		err := ValidateRefs("secrets", tc.refs, tc.env)
		if !errors.Is(err, sandbox.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateRefs(%.60v) = %v, want InvalidArgument saying %q", tc.refs, err, tc.want)
		}
	}
}
