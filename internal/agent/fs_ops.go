package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxDirEntries bounds one ListDir answer.
const maxDirEntries = 100000

func (fsv *filesystemService) Stat(ctx context.Context, req *agentpb.StatRequest) (*agentpb.StatResponse, error) {
	path, err := cleanPath(req.GetPath(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	info, err := statPath(path)
	if err != nil {
		return nil, err
	}
	return &agentpb.StatResponse{Info: info}, nil
}

func statPath(path string) (*agentpb.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fsError("stat", path, err)
	}
	var target string
	if fi.Mode()&os.ModeSymlink != 0 {
		target, _ = os.Readlink(path)
	}
	return fileInfoToWire(path, fi, target), nil
}

func (fsv *filesystemService) ListDir(ctx context.Context, req *agentpb.ListDirRequest) (*agentpb.ListDirResponse, error) {
	path, err := cleanPath(req.GetPath(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fsError("list", path, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(maxDirEntries + 1)
	if err != nil && len(names) == 0 {
		if fi, serr := f.Stat(); serr == nil && !fi.IsDir() {
			return nil, sandbox.FailedPrecondition(sandbox.ReasonNotDirectory, "list %s: the path is not a directory", path)
		}
		if !errors.Is(err, io.EOF) {
			return nil, fsError("list", path, err)
		}
	}
	if len(names) > maxDirEntries {
		return nil, sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded, "list %s: the directory has more than %d entries", path, maxDirEntries)
	}
	res := &agentpb.ListDirResponse{}
	for _, name := range names {
		info, err := statPath(filepath.Join(path, name))
		if err != nil {
			continue // removed while listing
		}
		res.Entries = append(res.Entries, info)
	}
	sortInfos(res.Entries)
	return res, nil
}

func (fsv *filesystemService) MakeDir(ctx context.Context, req *agentpb.MakeDirRequest) (*agentpb.MakeDirResponse, error) {
	path, err := cleanPath(req.GetPath(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	mode := sandbox.FileModeFromUnix(req.GetMode())
	if mode.Perm() == 0 {
		mode |= 0o755
	}
	_, statErr := os.Lstat(path)
	if err := os.MkdirAll(path, mode); err != nil {
		return nil, fsError("mkdir", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// The dir this call made gets exactly mode: mkdir(2) applies the
		// umask and drops setuid and setgid. Parents made on the way keep
		// what mkdir gave them, and an existing dir is left as it is.
		if err := os.Chmod(path, mode); err != nil {
			return nil, fsError("mkdir", path, err)
		}
	}
	return &agentpb.MakeDirResponse{}, nil
}

func (fsv *filesystemService) Remove(ctx context.Context, req *agentpb.RemoveRequest) (*agentpb.RemoveResponse, error) {
	path, err := cleanPath(req.GetPath(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	if path == "/" {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "remove /: refusing to remove the sandbox's root")
	}
	if req.GetRecursive() {
		if _, err := os.Lstat(path); err != nil {
			return nil, fsError("remove", path, err)
		}
		err = os.RemoveAll(path)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		return nil, fsError("remove", path, err)
	}
	return &agentpb.RemoveResponse{}, nil
}

func (fsv *filesystemService) Rename(ctx context.Context, req *agentpb.RenameRequest) (*agentpb.RenameResponse, error) {
	from, err := cleanPath(req.GetFrom(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	to, err := cleanPath(req.GetTo(), fsv.s.workDir())
	if err != nil {
		return nil, err
	}
	if err := os.Rename(from, to); err != nil {
		return nil, fsError("rename", from+" to "+to, err)
	}
	return &agentpb.RenameResponse{}, nil
}

func sortInfos(infos []*agentpb.FileInfo) {
	sort.Slice(infos, func(i, j int) bool { return infos[i].GetName() < infos[j].GetName() })
}
