package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ImageFilesTest {

    @Test
    void localFilesOfPythonFormatsAreSentAsPaths(@TempDir Path dir) throws Exception {
        Path svs = Files.createFile(dir.resolve("slide one.SVS"));
        Path czi = Files.createFile(dir.resolve("slide.czi"));
        assertEquals(Optional.of(svs), ImageFiles.pythonReadable(List.of(svs.toUri())));
        assertTrue(ImageFiles.pythonReadable(List.of(czi.toUri())).isEmpty(), "Bio-Formats only: QuPath sends tiles");
        assertTrue(ImageFiles.pythonReadable(List.of(dir.resolve("gone.tif").toUri())).isEmpty());
        assertTrue(ImageFiles.pythonReadable(List.of(svs.toUri(), svs.toUri())).isEmpty(), "several files");
        assertTrue(ImageFiles.pythonReadable(List.of(new URI("https://example.org/a.tif"))).isEmpty());
        assertTrue(ImageFiles.pythonReadable(List.of()).isEmpty());
        assertFalse(ImageFiles.hasPythonSuffix(Path.of("noext")));
        assertEquals(Optional.of(svs), ImageFiles.localFile(new URI("file:" + svs.toString().replace(" ", "%20"))));
    }
}
