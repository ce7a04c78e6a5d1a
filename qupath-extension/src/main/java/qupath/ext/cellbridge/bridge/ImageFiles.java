package qupath.ext.cellbridge.bridge;

import java.net.URI;
import java.nio.file.Files;
import java.nio.file.FileSystemNotFoundException;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;

/**
 * Which image files the Python side reads itself (tiffslide, OpenSlide, OpenCV: see
 * {@code cellbridge.io.slides}), so that QuPath can send a path instead of pixels.
 * <pre>{@code
 * Optional<Path> file = ImageFiles.pythonReadable(server.getURIs());
 * }</pre>
 */
public final class ImageFiles {

    /** File name suffixes (lower case, with the dot) of formats the Python side opens. */
    public static final Set<String> PYTHON_SUFFIXES = Set.of(
            // tiffslide (TIFF-based whole-slide formats)
            ".tif", ".tiff", ".svs", ".btf", ".tf8", ".qptiff", ".scn", ".bif",
            // OpenSlide
            ".ndpi", ".mrxs", ".vms", ".vmu", ".svslide",
            // OpenCV (plain images)
            ".png", ".jpg", ".jpeg", ".bmp", ".jp2", ".webp");

    private ImageFiles() {
    }

    /**
     * @param uri an image URI
     * @return the local file it names, if it is a {@code file:} URI of an existing file
     */
    public static Optional<Path> localFile(URI uri) {
        if (uri == null || !"file".equalsIgnoreCase(uri.getScheme()))
            return Optional.empty();
        try {
            Path path = Path.of(uri);
            return Files.exists(path) ? Optional.of(path) : Optional.empty();
        } catch (IllegalArgumentException | FileSystemNotFoundException e) {  // also InvalidPathException
            return Optional.empty();
        }
    }

    /**
     * @param path a file
     * @return true if its suffix is one the Python side opens
     */
    public static boolean hasPythonSuffix(Path path) {
        Path name = path.getFileName();
        if (name == null)
            return false;
        String text = name.toString().toLowerCase(Locale.ROOT);
        int dot = text.lastIndexOf('.');
        return dot >= 0 && PYTHON_SUFFIXES.contains(text.substring(dot));
    }

    /**
     * The file Python can read for an image made from these URIs: exactly one URI, a local, readable regular file of
     * a format the Python side opens.
     * @param uris the image server's URIs
     * @return the file, or empty when QuPath must send the pixels
     */
    public static Optional<Path> pythonReadable(Collection<URI> uris) {
        if (uris == null || uris.size() != 1)
            return Optional.empty();
        return localFile(uris.iterator().next())
                .filter(p -> Files.isRegularFile(p) && Files.isReadable(p) && hasPythonSuffix(p));
    }
}
