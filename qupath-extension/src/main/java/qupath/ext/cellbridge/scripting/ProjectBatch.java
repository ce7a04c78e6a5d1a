package qupath.ext.cellbridge.scripting;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.CellBridge;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.CountsRow;
import qupath.lib.images.ImageData;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.projects.Project;
import qupath.lib.projects.ProjectIO;
import qupath.lib.projects.ProjectImageEntry;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Resumable CellBridge runs over QuPath projects, for the Groovy scripts in {@code scripts/}: each image is run,
 * saved, marked in its project entry's metadata with the run's signature, and written as one row of a counts CSV;
 * an image already marked with the same signature (same model, version, weights and parameters) is skipped; a
 * failing image is reported in its row and the batch goes on.
 * <p>
 * Only what needs QuPath is here (reading and saving project entries, the objects in the hierarchy). What the
 * Python batch ({@code cellbridge batch}) shares comes from the server: the signature
 * ({@link qupath.ext.cellbridge.bridge.CellBridgeClient#signature}, the batch's own function) and the counts table
 * ({@link qupath.ext.cellbridge.bridge.CellBridgeClient#putCountsRow}, written by the batch's own writer under its
 * file lock), so both write the same table and mark entries with the same signatures.
 * <pre>{@code
 * // in "Run for project" (one image at a time; getProject() etc. are the script editor's default imports):
 * ProjectBatch.runImage(CellBridge.builder("nuclei-brightfield").build(), getProject(), getProjectEntry(),
 *         getCurrentImageData(), buildFilePath(PROJECT_BASE_DIR, "cellbridge-counts.csv"))
 * // several projects:
 * ProjectBatch.runProjects(cellbridge, ["/data/p1/project.qpproj", "/data/p2/project.qpproj"], "/data/counts.csv")
 * }</pre>
 */
public final class ProjectBatch {

    private static final Logger logger = LoggerFactory.getLogger(ProjectBatch.class);

    /** The project entry metadata key holding the signature of the last CellBridge run on the image. */
    public static final String SIGNATURE_KEY = "cellbridge.signature";
    /** The project entry metadata key holding the model of the last CellBridge run on the image. */
    public static final String MODEL_KEY = "cellbridge.model";

    private ProjectBatch() {
    }

    /**
     * Run on one image of a script (the current one in "Run for project"), unless it was done with the same
     * signature; the image is saved by "Run for project" itself.
     * @param cellbridge what to run
     * @param project the image's project, or null
     * @param entry the image's project entry, or null (then nothing marks it done)
     * @param imageData the image
     * @param csvPath the counts table to update (may be null for none)
     * @return the image's row
     * @throws CellBridgeException naming the image when it fails (after its row was written)
     */
    public static CountsRow runImage(CellBridge cellbridge, Project<BufferedImage> project,
                                     ProjectImageEntry<BufferedImage> entry, ImageData<BufferedImage> imageData,
                                     String csvPath) {
        if (imageData == null)
            throw new CellBridgeException("no image is open");
        String projectName = project == null ? "" : projectName(project);
        String imageName = entry == null ? imageData.getServer().getMetadata().getName() : entry.getImageName();
        String imageId = entry == null ? imageName : entry.getID();
        String model = cellbridge.settings().model();
        CountsRow row;
        try {
            String signature = cellbridge.signature();
            if (entry != null && signature.equals(entry.getMetadata().get(SIGNATURE_KEY))) {
                logger.info("{}: already done with the same model and parameters ({}); skipped", imageName, signature);
                row = CountsRow.skipped(projectName, imageName, imageId, model, signature,
                        CellBridge.countDetections(imageData));
            } else {
                CellBridge.Result result = cellbridge.detectObjects(imageData, parents(imageData.getHierarchy()));
                if (entry != null) {
                    mark(entry, model, signature);
                    if (project != null)
                        project.syncChanges();
                }
                row = CountsRow.done(projectName, imageName, imageId, model, signature, result.seconds(),
                        result.classCounts());
            }
        } catch (IOException | RuntimeException e) {
            row = CountsRow.failed(projectName, imageName, imageId, model, describe(e));
            logger.error("{}: {}", imageName, row.error());
        }
        if (csvPath != null)
            putRow(cellbridge, Path.of(csvPath), row);
        if (CountsRow.FAILED.equals(row.status()))
            throw new CellBridgeException(imageName + ": " + row.error());
        return row;
    }

    /**
     * Run on every image of several projects, saving each image and its project as it goes.
     * @param cellbridge what to run
     * @param projectFiles {@code project.qpproj} files (or their folders)
     * @param csvPath the counts table to write (one row per image, rewritten after each image)
     * @return the rows of this run, in order
     */
    public static List<CountsRow> runProjects(CellBridge cellbridge, List<?> projectFiles, String csvPath) {
        String signature = cellbridge.signature();
        String model = cellbridge.settings().model();
        Path csv = Path.of(csvPath);
        List<CountsRow> rows = new ArrayList<>();
        for (Object given : projectFiles) {
            File file = projectFile(given.toString());
            Project<BufferedImage> project;
            try {
                project = ProjectIO.loadProject(file, BufferedImage.class);
            } catch (IOException | RuntimeException e) {
                CountsRow row = CountsRow.failed(file.getParentFile().getName(), "", "", model,
                        file + ": cannot open the project: " + describe(e));
                logger.error(row.error());
                rows.add(putRow(cellbridge, csv, row));
                continue;
            }
            String projectName = projectName(project);
            List<ProjectImageEntry<BufferedImage>> entries = project.getImageList();
            logger.info("CellBridge: project {} ({} images)", projectName, entries.size());
            for (ProjectImageEntry<BufferedImage> entry : entries) {
                if (Thread.currentThread().isInterrupted())
                    throw new CellBridgeException("interrupted");
                rows.add(putRow(cellbridge, csv, runEntry(cellbridge, project, projectName, entry, signature, model)));
            }
        }
        long failed = rows.stream().filter(r -> CountsRow.FAILED.equals(r.status())).count();
        logger.info("CellBridge: {} images, {} failed; counts in {}", rows.size(), failed, csv);
        return rows;
    }

    private static CountsRow runEntry(CellBridge cellbridge, Project<BufferedImage> project, String projectName,
                                      ProjectImageEntry<BufferedImage> entry, String signature, String model) {
        String image = entry.getImageName();
        String id = entry.getID();
        try {
            if (entry.hasImageData() && signature.equals(entry.getMetadata().get(SIGNATURE_KEY))) {
                logger.info("{}: already done with the same model and parameters; skipped", image);
                return CountsRow.skipped(projectName, image, id, model, signature,
                        CellBridge.countClasses(entry.readHierarchy().getDetectionObjects()));
            }
            ImageData<BufferedImage> imageData = entry.readImageData();
            try {
                CellBridge.Result result = cellbridge.detectObjects(imageData, parents(imageData.getHierarchy()));
                entry.saveImageData(imageData);
                mark(entry, model, signature);
                project.syncChanges();
                logger.info("{}: {} objects in {} s", image, result.objects(),
                        String.format(Locale.ROOT, "%.1f", result.seconds()));
                return CountsRow.done(projectName, image, id, model, signature, result.seconds(),
                        result.classCounts());
            } finally {
                try {
                    imageData.getServer().close();
                } catch (Exception e) {
                    logger.debug("Cannot close the server of {}: {}", image, e.getMessage());
                }
            }
        } catch (IOException | RuntimeException e) {
            logger.error("{}: {}", image, describe(e));
            return CountsRow.failed(projectName, image, id, model, describe(e));
        }
    }

    /**
     * The parents of a batch run: the top-level annotations with an area, else the whole image.
     * @param hierarchy an image's hierarchy
     * @return the parents
     */
    public static List<PathObject> parents(PathObjectHierarchy hierarchy) {
        List<PathObject> annotations = hierarchy.getRootObject().getChildObjects().stream()
                .filter(PathObject::isAnnotation).filter(p -> p.hasROI() && p.getROI().isArea()).toList();
        return annotations.isEmpty() ? List.of(hierarchy.getRootObject()) : annotations;
    }

    /**
     * @param project a project
     * @return the name of its folder (the project's name in the CSV, as {@code cellbridge batch} writes it)
     */
    public static String projectName(Project<?> project) {
        Path path = project.getPath();
        if (path == null || path.getParent() == null || path.getParent().getFileName() == null)
            return project.getName();
        return path.getParent().getFileName().toString();
    }

    /**
     * Read the text file of a batch: one {@code project.qpproj} (or project folder) per line; blank lines and
     * lines starting with {@code #} are ignored.
     * @param listFile the text file
     * @return the project paths
     * @throws CellBridgeException if it cannot be read
     */
    public static List<String> readProjectList(String listFile) {
        try {
            return Files.readAllLines(Path.of(listFile)).stream().map(String::strip)
                    .filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
        } catch (IOException e) {
            throw new CellBridgeException(listFile + ": cannot read the project list: " + e.getMessage(), e);
        }
    }

    private static void mark(ProjectImageEntry<?> entry, String model, String signature) {
        Map<String, String> metadata = entry.getMetadata();
        metadata.put(SIGNATURE_KEY, signature);
        metadata.put(MODEL_KEY, model);
    }

    /** Put a row into the counts table (the server writes it); a failed image's row is only logged when that fails. */
    private static CountsRow putRow(CellBridge cellbridge, Path csv, CountsRow row) {
        try {
            cellbridge.client().putCountsRow(csv, row);
        } catch (CellBridgeException e) {
            if (!CountsRow.FAILED.equals(row.status()))
                throw e;
            logger.error("{}: cannot add its row to {}: {}", row.image().isEmpty() ? row.project() : row.image(), csv,
                    e.getMessage());
        }
        return row;
    }

    private static File projectFile(String given) {
        File file = new File(given.strip());
        if (file.isDirectory())
            file = new File(file, ProjectIO.DEFAULT_PROJECT_NAME + ProjectIO.getProjectExtension(true));
        return file;
    }

    /** The messages of an error and its causes (QuPath's "Failed to load ImageServer" says which file only in its cause). */
    private static String describe(Throwable e) {
        List<String> parts = new ArrayList<>();
        for (Throwable t = e; t != null && parts.size() < 4; t = t.getCause() == t ? null : t.getCause()) {
            String message = t.getMessage() == null ? "" : t.getMessage().strip();
            if (!message.isEmpty() && parts.stream().noneMatch(part -> part.contains(message)))
                parts.add(message);
        }
        return parts.isEmpty() ? e.getClass().getSimpleName() : String.join(": ", parts);
    }
}
