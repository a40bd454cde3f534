package agent

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxAccountFile bounds how much of /etc/passwd and /etc/group is read.
const maxAccountFile = 4 << 20

// identity is a resolved user: the credential to run a process with and the
// home directory for HOME.
type identity struct {
	cred *syscall.Credential
	home string
}

// lookupUser resolves "uid", "uid:gid", "name" or "name:group" against the
// sandbox's /etc/passwd and /etc/group under root, as container engines do:
// a numeric uid missing from /etc/passwd runs with gid 0 and home "/".
func lookupUser(root, spec string) (*identity, error) {
	if spec == "" {
		return nil, nil
	}
	if len(spec) > 256 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "user is %d bytes long; give a uid or a name", len(spec))
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	id := &identity{cred: &syscall.Credential{}, home: "/"}
	var name string
	if uid, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		id.cred.Uid = uint32(uid)
		if e := findPasswd(root, func(f []string) bool { return f[2] == userPart }); e != nil {
			name = e[0]
			id.home = e[5]
			if gid, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				id.cred.Gid = uint32(gid)
			}
		}
	} else {
		e := findPasswd(root, func(f []string) bool { return f[0] == userPart })
		if e == nil {
			return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "user %q is not in the sandbox's /etc/passwd; give a numeric uid or a user of the image", userPart)
		}
		uid, err1 := strconv.ParseUint(e[2], 10, 32)
		gid, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "user %q has a malformed entry in the sandbox's /etc/passwd", userPart)
		}
		name, id.home = e[0], e[5]
		id.cred.Uid, id.cred.Gid = uint32(uid), uint32(gid)
	}
	if hasGroup {
		if gid, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			id.cred.Gid = uint32(gid)
		} else {
			g := findGroup(root, func(f []string) bool { return f[0] == groupPart })
			if g == nil {
				return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "group %q is not in the sandbox's /etc/group; give a numeric gid or a group of the image", groupPart)
			}
			gid, err := strconv.ParseUint(g[2], 10, 32)
			if err != nil {
				return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "group %q has a malformed entry in the sandbox's /etc/group", groupPart)
			}
			id.cred.Gid = uint32(gid)
		}
	}
	if name != "" {
		id.cred.Groups = supplementaryGroups(root, name)
	}
	if id.home == "" {
		id.home = "/"
	}
	return id, nil
}

func supplementaryGroups(root, name string) []uint32 {
	var gids []uint32
	eachLine(filepath.Join(root, "etc/group"), 4, func(f []string) bool {
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil && len(gids) < 64 {
					gids = append(gids, uint32(gid))
				}
			}
		}
		return false
	})
	return gids
}

func findPasswd(root string, match func([]string) bool) []string {
	return eachLine(filepath.Join(root, "etc/passwd"), 7, match)
}

func findGroup(root string, match func([]string) bool) []string {
	return eachLine(filepath.Join(root, "etc/group"), 4, match)
}

// eachLine calls match on the colon-separated fields of each line of file
// with at least n fields, and returns the first line it matches.
func eachLine(file string, n int, match func([]string) bool) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxAccountFile))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) >= n && match(fields) {
			return fields
		}
	}
	return nil
}
