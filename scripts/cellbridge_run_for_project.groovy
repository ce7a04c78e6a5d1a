/**
 * CellBridge for every image of the open project: open this script in Automate > Script editor and choose
 * Run > Run for project (QuPath 0.6). QuPath opens each image, runs this script and saves the image.
 *
 * Resumable: each image done is marked in its project entry (metadata "cellbridge.signature": model, version
 * and parameters); an image already done with the same model and parameters is skipped, so stopping and running
 * again continues where it stopped. Each image adds or replaces its row in cellbridge-counts.csv in the project
 * folder: objects per class, status (done / skipped / failed), model, signature, seconds, error.
 *
 * Objects go under the top-level annotations of each image, or the whole image when it has none.
 *
 * From a shell, without the GUI (QuPath's own command line; -s saves each image as Run for project does):
 *   QuPath script -p /data/p1/project.qpproj -s cellbridge_run_for_project.groovy
 */
import qupath.ext.cellbridge.CellBridge
import qupath.ext.cellbridge.scripting.ProjectBatch

// ---- parameters --------------------------------------------------------------------------------------------
def cellbridge = CellBridge.builder("nuclei-brightfield")   // or a model folder
        .device("auto")
        .tileSize(1024)
        .overlap(64)
        .cellExpansion(3.0)
        .build()
def csv = buildFilePath(PROJECT_BASE_DIR, "cellbridge-counts.csv")
// -----------------------------------------------------------------------------------------------------------

def row = ProjectBatch.runImage(cellbridge, getProject(), getProjectEntry(), getCurrentImageData(), csv)
println "${row.image()}: ${row.status()}, ${row.objects()} objects ${row.counts()}"
