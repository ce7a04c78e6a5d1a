/**
 * CellBridge: detect and segment nuclei in the current image (QuPath 0.6, Automate > Script editor > Run).
 *
 * Runs under the selected annotations, or the whole image when none is selected; earlier detections there are
 * replaced. The run is recorded in the image's workflow, so Workflow > Create script reproduces it.
 * Needs the CellBridge extension and its Python environment (Edit > Preferences > CellBridge).
 */
import qupath.ext.cellbridge.CellBridge

// ---- parameters --------------------------------------------------------------------------------------------
def model = "nuclei-brightfield"  // a name from CellBridge.listModels(), or a model folder
def device = "auto"          // auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps
def cellExpansion = 3.0      // µm around each nucleus (0: nuclei only)
// -----------------------------------------------------------------------------------------------------------

def imageData = getCurrentImageData()
if (imageData == null) {
    println "Open an image first"
    return
}
def parents = getSelectedObjects().findAll { it.isAnnotation() }
if (parents.isEmpty())
    parents = [imageData.getHierarchy().getRootObject()]

def result = CellBridge.builder(model)
        .device(device)
        .tileSize(1024)
        .overlap(64)
        .cellExpansion(cellExpansion)
        .build()
        .detectObjects(imageData, parents)

println String.format("%d objects in %.1f s", result.objects(), result.seconds())
result.classCounts().each { name, n -> println "  ${name}: ${n}" }
