// The one translation unit that compiles stb_image (decoding) and stb_image_write (used by tests to write
// PNG/JPEG fixtures) from Debian's libstb-dev headers, so no extra library is linked. Only the decoders the
// datasets accept are kept; stb's failure reason is thread-local, so decoding may run on many threads.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_ONLY_GIF
#define STBI_NO_STDIO  // files are read whole first, then decoded from memory
#include <stb/stb_image.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
