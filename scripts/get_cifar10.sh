#!/usr/bin/env bash
# CIFAR-10 for vt. With no ARCHIVE, downloads the official binary version (162 MB, MD5-checked) and unpacks
# it into DEST/cifar-10-batches-bin; with an ARCHIVE, unpacks that file instead: the official binary tarball
# or an image-folder tarball holding train/<class>/<image> and test/<class>/<image>. Data already in DEST is
# kept, so running it again does nothing. Either layout is what `open_dataset(DEST, ...)` reads.
# Usage: scripts/get_cifar10.sh [ARCHIVE] [DEST=data]     (ARCHIVE "" downloads into another DEST)
set -euo pipefail

archive=${1:-}
dest=${2:-data}
url=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
md5=c32a1d4ab5d03f1284b67883e8d87530  # as published on https://www.cs.toronto.edu/~kriz/cifar.html
binary_files=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)

fail() {
  echo "get_cifar10: $*" >&2
  exit 1
}
binary_ready() {
  local f
  for f in "${binary_files[@]}"; do [ -f "$dest/cifar-10-batches-bin/$f" ] || return 1; done
}
folders_ready() { [ -d "$dest/train" ] && [ -d "$dest/test" ]; }
done_binary() { echo "get_cifar10: CIFAR-10 (binary version) is in $dest/cifar-10-batches-bin; open it as $dest"; }
done_folders() { echo "get_cifar10: CIFAR-10 image folders are in $dest/train and $dest/test; open them as $dest"; }

if [ -z "$archive" ]; then
  if binary_ready; then
    done_binary
    exit 0
  fi
  mkdir -p "$dest"
  archive=$dest/cifar-10-binary.tar.gz
  if [ ! -f "$archive" ] || [ "$(md5sum "$archive" | cut -d' ' -f1)" != "$md5" ]; then
    echo "get_cifar10: downloading $url"
    offline="could not download $url (no network?). Download it elsewhere and run: $0 ARCHIVE $dest"
    if command -v curl >/dev/null; then
      curl -fL --retry 2 --connect-timeout 20 -o "$archive.part" "$url" || { rm -f "$archive.part"; fail "$offline"; }
    elif command -v wget >/dev/null; then
      wget -q --tries=2 --timeout=20 -O "$archive.part" "$url" || { rm -f "$archive.part"; fail "$offline"; }
    else
      fail "downloading needs curl or wget; or download $url elsewhere and run: $0 ARCHIVE $dest"
    fi
    got=$(md5sum "$archive.part" | cut -d' ' -f1)
    if [ "$got" != "$md5" ]; then
      rm -f "$archive.part"
      fail "$url has MD5 $got, expected $md5 (an incomplete or altered download)"
    fi
    mv "$archive.part" "$archive"
  fi
fi

[ -f "$archive" ] || fail "no such archive: $archive"
listing=$(tar tzf "$archive") || fail "cannot list $archive: not a .tar.gz archive?"
if grep -qE '^(\./)?cifar-10-batches-bin/test_batch\.bin$' <<<"$listing"; then
  layout=binary
  binary_ready && { done_binary; exit 0; }
elif grep -qE '^(\./)?train/[^/]+/[^/]+$' <<<"$listing" && grep -qE '^(\./)?test/[^/]+/[^/]+$' <<<"$listing"; then
  layout=folders
  folders_ready && { done_folders; exit 0; }
else
  fail "$archive holds neither cifar-10-batches-bin/ (the binary version) nor train/<class>/<image> and test/<class>/<image>"
fi

# Unpack next to the destination, then move into place: an interrupted run leaves no half-filled data folder.
mkdir -p "$dest"
staging=$(mktemp -d "$dest/.unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
echo "get_cifar10: unpacking $archive"
tar xzf "$archive" -C "$staging"
if [ "$layout" = binary ]; then
  rm -rf "$dest/cifar-10-batches-bin"  # an incomplete earlier copy (binary_ready was false)
  mv "$staging/cifar-10-batches-bin" "$dest/"
  binary_ready || fail "$archive lacks some of ${binary_files[*]}"
  done_binary
else
  for split in train test; do
    [ -d "$dest/$split" ] || mv "$staging/$split" "$dest/"
  done
  done_folders
fi
